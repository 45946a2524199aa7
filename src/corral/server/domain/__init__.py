"""The management server's domain: users, tokens, settings, clusters, nodes.

Modules here import the store and nothing of HTTP; they raise the neutral errors of
`corral.server.domain.errors`, which `corral.server.api` translates to the wire once.

    records      JSON resources under /corral/<collection>/<id>, compare-on-revision writes,
                 the parts of multi-key transactions
    users        users and the username index, the bootstrap admin
    tokens       API tokens, authentication, Principal
    settings     setting definitions and the cache that follows the store's watch
    clusters     clusters and their registration tokens
    nodes        node heartbeats of an HA install
    credentials  password hashes, token secrets, ids (pure)
    clock        epoch milliseconds and RFC 3339 times
"""
