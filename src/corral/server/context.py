"""What every part of the management server shares: the store and the domain services built on
it, how the server was started (data directory, `--server-url`), the published CA, the audit
log, the serving certificates and the leader election.

Several servers may share one store (Rancher's HA guide): nothing here is state of its own
except what the start-up decided; users, tokens, settings and clusters live in the store, and
`settings` and `logins` (the tokens and users authentication needs) follow its watch
(`await ctx.settings.start_following()`, `await ctx.logins.start_following()`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corral.server.audit_log import AuditLog
from corral.server.certs import ServingCertificates
from corral.server.domain.clusters import Clusters
from corral.server.domain.login_cache import LoginCache
from corral.server.domain.settings import Settings
from corral.server.domain.tokens import Tokens
from corral.server.domain.users import Users
from corral.server.election import Election
from corral.store.base import Store


@dataclass
class ServerContext:
    """Built once at start-up by `corral server` and handed to the ASGI app; the domain
    services are built from `store`."""

    store: Store
    data_dir: Path
    # PEM of the CA clients should trust; "" with --no-cacerts or a recognised-CA certificate.
    cacerts_pem: str = ""
    # --server-url as given ("" when not): it wins over the stored `server-url` setting.
    server_url_flag: str = ""
    # The API audit log when AUDIT_LEVEL > 0, else None.
    audit: AuditLog | None = None
    # The certificates behind the HTTPS listener (None in unit tests).
    certificates: ServingCertificates | None = None
    # The leader election (etcd store); None with the embedded store (the only server leads).
    election: Election | None = None
    logins: LoginCache = field(init=False)
    users: Users = field(init=False)
    tokens: Tokens = field(init=False)
    settings: Settings = field(init=False)
    clusters: Clusters = field(init=False)

    def __post_init__(self) -> None:
        self.logins = LoginCache(self.store)
        self.users = Users(self.store, self.logins)
        self.tokens = Tokens(self.store, self.logins)
        self.settings = Settings(self.store, self)
        self.clusters = Clusters(self.store)

    @property
    def server_url(self) -> str:
        """The URL operators reach the server by: `--server-url`, else the `server-url`
        setting as the settings cache last saw it ("" when neither is set)."""
        return self.settings.cached_server_url()
