"""Taking a node's server out of every ingress while it restarts (and putting it back).

Every node's `corral ingress` forwards to the servers of every node, so a server that restarts
would still get requests from the other nodes' ingresses until their health checks notice: a
request sent on a kept-alive connection just as the server closes it fails when it may not be
retried (a POST). So before a server restarts, each running ingress gets its `ingress.yml`
rewritten without that server and re-reads it (SIGHUP: new workers on the same sockets, the
previous ones finish what they have); once the server is healthy the file is put back the same
way. The file's content is the service's own (the digest `corral up` records) whenever no
server is out.

The provider signals each ingress where it runs (on this machine, or on an SSH node by the
node's operations) and reports the previous workers, which the caller waits for.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from corral.config.ingress_load import ingress_yaml
from corral.install.desired import NodeSpec
from corral.install.ingress_file import ingress_config_for
from corral.install.prepare import Prepared
from corral.install.providers.base import FileSpec, NodePaths
from corral.install.services import INGRESS_FILE, server_endpoint

#: Processes that now drain, per node: what to wait for after a reload.
Draining = list[tuple[NodePaths, list[int]]]


def ingress_text(prepared: Prepared, node: NodeSpec, servers_out: Collection[str]) -> bytes:
    """`node`'s ingress.yml with every controlplane node's server but `servers_out`."""
    upstreams = [server_endpoint(n) for n in prepared.desired.nodes_with("controlplane")
                 if n.name not in servers_out]
    config = ingress_config_for(prepared.desired, node, upstreams, prepared.ctx.trusted_proxies)
    return ingress_yaml(config).encode()


def _running_pid(prepared: Prepared, node: str) -> int:
    """The pid of node's running ingress (0 when none runs)."""
    paths = prepared.provider.node_paths(node)
    try:
        status = json.loads(prepared.provider.read_file(paths, paths.status) or b"")
        entry = status["services"]["ingress"]
        return int(entry["pid"]) if entry.get("running") else 0
    except (ValueError, KeyError, TypeError):
        return 0


def sync_ingresses(prepared: Prepared, servers_out: Collection[str],
                   skip: Collection[str] = ()) -> Draining:
    """Rewrite each running ingress's file for `servers_out` (but on nodes in `skip`) and
    make it re-read it; returns, per node, the workers that now drain (to wait for)."""
    draining: Draining = []
    for node in prepared.desired.nodes_with("worker"):
        pid = _running_pid(prepared, node.name) if node.name not in skip else 0
        if not pid:
            continue
        paths = prepared.provider.node_paths(node.name)
        text = ingress_text(prepared, node, servers_out)
        if prepared.provider.read_file(paths, paths.file(INGRESS_FILE)) == text:
            continue
        prepared.provider.write_files(paths, {INGRESS_FILE: FileSpec(text, 0o644)})
        draining.append((paths, prepared.provider.hang_up(paths, pid)))
    return draining
