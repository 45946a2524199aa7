"""`corral remove` for `provider: ssh`: on every node at once, stop the supervisor (which
stops the services), kill whatever of the node is left, then empty Corral's directories there
(/etc/corral, /var/lib/corral, /var/log/corral, /opt/corral) and drop its systemd unit.

The nodes come from the cluster file; when it no longer passes its checks, from what can still
be read of it (a broken edit must not keep a cluster running), plus the nodes the state file
recorded that the file lost.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from corral.install.desired import (
    DEFAULT_SSH_PORT,
    ROLES,
    DesiredCluster,
    IngressSettings,
    NodeSpec,
    ServerSettings,
)
from corral.install.model import ClusterFile
from corral.install.progress import Progress
from corral.install.providers.base import ProviderError
from corral.install.state import ClusterState
from corral.install.validate_ssh import RKE_DEFAULT_SSH_KEY, resolve_path, ssh_options

STOP_TIMEOUT_S = 4.0  # as for local nodes: the data is deleted next


def _lenient(cluster_file: Path) -> DesiredCluster:
    """The nodes and SSH settings of a cluster file that does not validate (best effort)."""
    try:
        raw: Any = yaml.safe_load(cluster_file.read_text())
    except (OSError, yaml.YAMLError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    base = cluster_file.parent
    top_key = raw.get("ssh_key_path")
    nodes = []
    for item in raw.get("nodes") or []:
        if not isinstance(item, dict) or not item.get("address"):
            continue
        key = item.get("ssh_key_path") or top_key or RKE_DEFAULT_SSH_KEY
        nodes.append(NodeSpec(
            name=str(item.get("hostname_override") or item["address"]),
            address=str(item["address"]),
            internal_address=str(item.get("internal_address") or item["address"]),
            roles=frozenset(r for r in ROLES if r in (item.get("role") or [])),
            user=str(item.get("user") or "root"),
            port=int(item.get("port") or DEFAULT_SSH_PORT),
            ssh_key_path=resolve_path(str(key), base),
            ssh_agent_auth=bool(item.get("ssh_agent_auth", raw.get("ssh_agent_auth", False))),
        ))
    try:
        options = ssh_options(ClusterFile.model_validate(
            {k: raw[k] for k in ("ssh_known_hosts_path", "ssh_strict_host_key_checking",
                                 "ssh_agent_auth", "ssh_key_path") if k in raw}), base)
    except ValueError:
        options = ssh_options(ClusterFile(), base)
    return DesiredCluster(source=cluster_file, cluster_name="", provider="ssh",
                          nodes=tuple(nodes), server=ServerSettings(),
                          ingress=IngressSettings(host="localhost"), ssh=options)


def cluster_nodes(cluster_file: Path, state: ClusterState | None, progress: Progress
                  ) -> DesiredCluster:
    """The cluster to tear down: the file's nodes (validated if it can be), and the nodes the
    state file has that the file lost (reached as root on port 22 with the file's key)."""
    from corral.install.validate import ClusterFileError, load_cluster_file

    try:
        desired = load_cluster_file(cluster_file)
    except (ClusterFileError, OSError):
        progress.warn(f"{cluster_file.name} does not pass its checks: reaching the nodes it "
                      "names as far as it can be read")
        desired = _lenient(cluster_file)
    known = {node.name for node in desired.nodes}
    key = desired.nodes[0].ssh_key_path if desired.nodes else None
    extra = [NodeSpec(name=n.name, address=n.address, internal_address=n.internal_address,
                      roles=frozenset(), ssh_key_path=key)
             for n in (state.nodes.values() if state else []) if n.name not in known
             and n.address and n.roles]
    return replace(desired, nodes=(*desired.nodes, *extra))


def remove_nodes(
    cluster_file: Path, state: ClusterState | None, base: Path, progress: Progress
) -> tuple[list[str], list[int], list[str]]:
    """Stop and empty every SSH node; (removed, pids still running, nodes that failed)."""
    from corral.install.providers.ssh import SshProvider

    desired = cluster_nodes(cluster_file, state, progress)
    provider = SshProvider(desired, base)
    removed: list[str] = []
    left: list[int] = []
    failed: list[str] = []

    def one(node: NodeSpec) -> None:
        paths = provider.node_paths(node.name)
        try:
            pids = provider.node_processes(paths)
            if pids:
                progress.info(f"Stopping node [{node.name}] ({len(pids)} processes)", "remove")
            killed = provider.stop_node(paths, STOP_TIMEOUT_S)
            if killed:
                progress.info(f"node [{node.name}]: killed {killed} process(es) still stopping "
                              f"after {STOP_TIMEOUT_S:g}s", "remove")
            still = provider.node_processes(paths)
            if still:
                left.extend(still)
                progress.warn(f"node [{node.name}]: still running: pids {still}", "remove")
                return
            provider.delete_node(paths)
        except ProviderError as exc:
            failed.append(node.name)
            progress.warn(f"{exc}", "remove")
            return
        removed.append(node.name)
        progress.info(f"Deleted Corral's directories on node [{node.name}]", "remove")

    try:
        with ThreadPoolExecutor(max_workers=max(1, len(desired.nodes))) as pool:
            list(pool.map(one, desired.nodes))
    finally:
        provider.close()
    return removed, left, failed
