"""Taking a node's server out of every ingress while it restarts (and putting it back).

Every node's `corral ingress` forwards to the servers of every node, so a server that restarts
would still get requests from the other nodes' ingresses until their health checks notice: a
request sent on a kept-alive connection just as the server closes it fails when it may not be
retried (a POST). So before a server restarts, each running ingress gets its `ingress.yml`
rewritten without that server and re-reads it (SIGHUP: new workers on the same sockets, the
previous ones finish what they have); once the server is healthy the file is put back the same
way. The file's content is the service's own (the digest `corral up` records) whenever no
server is out.

The ingresses are signalled on this machine, so this is done for the local provider; on SSH
nodes the servers are taken out of the external load balancer only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Collection

import psutil

from corral.config.ingress_load import ingress_yaml
from corral.install.desired import NodeSpec
from corral.install.ingress_file import ingress_config_for
from corral.install.prepare import Prepared
from corral.install.providers.base import FileSpec
from corral.install.services import INGRESS_FILE, server_endpoint

SIGNALLED_PROVIDERS = ("local",)


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
                   skip: Collection[str] = ()) -> list[int]:
    """Rewrite each running ingress's file for `servers_out` (but on nodes in `skip`) and
    make it re-read it; returns the pids of the workers that now drain (to wait for)."""
    if prepared.provider.name not in SIGNALLED_PROVIDERS:
        return []
    draining: list[int] = []
    for node in prepared.desired.nodes_with("worker"):
        pid = _running_pid(prepared, node.name) if node.name not in skip else 0
        if not pid:
            continue
        paths = prepared.provider.node_paths(node.name)
        text = ingress_text(prepared, node, servers_out)
        if prepared.provider.read_file(paths, paths.file(INGRESS_FILE)) == text:
            continue
        with contextlib.suppress(psutil.Error):
            draining += [c.pid for c in psutil.Process(pid).children()]
        prepared.provider.write_files(paths, {INGRESS_FILE: FileSpec(text, 0o644)})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    return draining
