"""`corral remove`: stop every service of the cluster and delete what `corral up` created
(RKE's `rke remove`): the node directories, the load balancer's, the base directory, the state
file, the kubeconfig and the load-balancer configurations.

It works from the cluster file's path and the state file, without needing the cluster file to
validate (a broken edit must not keep a cluster running); without a state file it stops what it
finds in the base directory.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from corral.install.outputs import LB_SUFFIX, NGINX_SUFFIX
from corral.install.prepare import BASE_DIR_SUFFIX
from corral.install.progress import Progress
from corral.install.providers.base import NodePaths
from corral.install.providers.local import LocalProvider
from corral.install.state import STATE_SUFFIX, ClusterState, load_state

STOP_TIMEOUT_S = 4.0  # graceful stop first; the data is deleted next, so no long drain


@dataclass
class RemoveResult:
    """What was stopped and deleted, and what is left (nothing, normally)."""

    stopped: list[str] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    left_running: list[int] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # SSH nodes that could not be cleaned


def output_files(cluster_file: Path) -> list[Path]:
    """Every file `corral up` writes beside the cluster file."""
    stem = cluster_file.stem
    return [
        cluster_file.with_name(f"kube_config_{stem}.yml"),
        cluster_file.with_name(stem + STATE_SUFFIX),
        cluster_file.with_name(stem + LB_SUFFIX),
        cluster_file.with_name(stem + NGINX_SUFFIX),
    ]


def base_dir_of(cluster_file: Path, state_dir: Path | None) -> Path:
    """Where the node directories are: the state file's record, else --state-dir, else
    `<stem>.corral/` beside the cluster file."""
    state = load_state(cluster_file.with_name(cluster_file.stem + STATE_SUFFIX))
    if state is not None:
        return Path(state.base_dir)
    return (state_dir or cluster_file.with_name(cluster_file.stem + BASE_DIR_SUFFIX)).resolve()


def _provider_of(cluster_file: Path, state: ClusterState | None) -> str:
    """The state file's provider, else the cluster file's `provider:` (RKE's default ssh)."""
    if state is not None:
        return state.provider
    try:
        raw = yaml.safe_load(cluster_file.read_text())
    except (OSError, yaml.YAMLError):
        return "local"  # nothing to reach: only what is in the base directory
    return str(raw.get("provider", "ssh")) if isinstance(raw, dict) else "local"


def _node_dirs(base: Path) -> list[NodePaths]:
    found = [NodePaths(base / "lb")] if (base / "lb").is_dir() else []
    nodes = base / "nodes"
    if nodes.is_dir():
        found += [NodePaths(p) for p in sorted(nodes.iterdir()) if p.is_dir()]
    return found


def remove_cluster(
    cluster_file: Path, state_dir: Path | None, progress: Progress
) -> RemoveResult:
    """Stop the load balancer, then every node; delete their directories and the outputs."""
    result = RemoveResult()
    base = base_dir_of(cluster_file, state_dir)
    state = load_state(cluster_file.with_name(cluster_file.stem + STATE_SUFFIX))
    provider = LocalProvider(base)
    progress.info("Tearing down the cluster")
    found = _node_dirs(base)
    labels = {p.root: "corral lb" if p.root.name == "lb" else f"node [{p.root.name}]"
              for p in found}
    for paths in found:
        pids = provider.node_processes(paths)
        if pids:
            progress.info(f"Stopping {labels[paths.root]} ({len(pids)} processes)", "remove")
    # the load balancer first (clients stop arriving), then every node at once: no etcd
    # member waits for the others to stop one by one
    lb = [p for p in found if p.root.name == "lb"]
    nodes = [p for p in found if p not in lb]
    killed = {p.root: provider.stop_node(p, STOP_TIMEOUT_S) for p in lb}
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        killed.update(zip((p.root for p in nodes),
                          pool.map(lambda p: provider.stop_node(p, STOP_TIMEOUT_S), nodes),
                          strict=True))
    for paths in found:
        label = labels[paths.root]
        if killed.get(paths.root):
            progress.info(f"{label}: killed {killed[paths.root]} process(es) still stopping "
                          f"after {STOP_TIMEOUT_S:g}s", "remove")
        result.stopped.append(label)
        left = provider.node_processes(paths)
        if left:
            result.left_running += left
            progress.warn(f"{label}: still running: pids {left}", "remove")
            continue
        provider.delete_node(paths)
        progress.info(f"Deleted {paths.root}", "remove")
        result.deleted.append(paths.root)
    if _provider_of(cluster_file, state) == "ssh":
        from corral.install.ssh_teardown import remove_nodes

        removed, left, failed = remove_nodes(cluster_file, state, base, progress)
        result.stopped += [f"node [{name}]" for name in removed]
        result.left_running += left
        result.unreachable += failed
    if base.is_dir() and not result.left_running and not result.unreachable:
        shutil.rmtree(base, ignore_errors=True)
        result.deleted.append(base)
    for path in output_files(cluster_file) if not result.unreachable else []:
        if path.exists():
            path.unlink()
            progress.info(f"Deleted {path.name}", "remove")
            result.deleted.append(path)
    return result
