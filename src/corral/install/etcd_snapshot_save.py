"""`corral etcd snapshot-save` and `snapshot-list` (RKE's `rke etcd snapshot-save`): the cluster
as `corral up` built it, and its snapshots on the etcd nodes.

A snapshot is taken once, with `etcdctl snapshot save` from the first etcd member (in file
order) that is healthy — a consistent point in time of the whole keyspace — and the same bytes
are then copied to every other etcd node, each copy with its checksum file, so any node can
restore the cluster and every copy can be checked (`etcd_snapshot_files` has the layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from corral.install.desired import DesiredCluster
from corral.install.etcd_snapshot_node import NodeShell, SnapshotNodeError, shell_for
from corral.install.prepare import Prepared, prepare
from corral.install.progress import Progress
from corral.install.state import load_state, state_path

PHASE = "etcd"


class SnapshotError(Exception):
    """A snapshot command cannot go on: what is wrong and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


def open_cluster(
    desired: DesiredCluster, state_dir: Path | None, progress: Progress
) -> Prepared:
    """The cluster `corral up` built from `desired` (its state, provider, services and live
    probes); SnapshotError when it was never built. The caller closes `.provider`."""
    path = state_path(desired)
    if load_state(path) is None:
        raise SnapshotError(
            f"{path} does not exist: the cluster of {desired.source.name} has not been built",
            f"run `corral up --config {desired.source}` first (or give the cluster file the "
            "state file sits beside)")
    prepared = prepare(desired, state_dir, progress)
    if prepared.plan.problems or not prepared.services:
        prepared.provider.close()
        raise SnapshotError(
            "the cluster file no longer matches the cluster: " + "; ".join(prepared.plan.problems),
            f"run `corral up --config {desired.source} --dry-run` and fix what it says")
    return prepared


def etcd_shells(prepared: Prepared) -> list[NodeShell]:
    """Every etcd node of the cluster, in file order."""
    binary = prepared.ctx.etcd_binary
    return [shell_for(prepared.provider, node, binary)
            for node in prepared.desired.nodes_with("etcd")]


def member_healthy(prepared: Prepared, node: str) -> bool:
    """Did the etcd member of `node` pass its probe when the cluster was opened."""
    probe = prepared.probes.get(node)
    return bool(probe and probe.services.get("etcd", (False, ""))[0])


@dataclass(frozen=True, slots=True)
class Saved:
    """A snapshot on the etcd nodes."""

    name: str
    size: int
    digest: str
    nodes: tuple[str, ...]
    failed: tuple[str, ...] = ()  # "node [x]: why" for nodes the copy did not reach


def save_snapshot(prepared: Prepared, name: str, progress: Progress) -> Saved:
    """Take snapshot `name` from the first healthy member and copy it to every etcd node."""
    shells = etcd_shells(prepared)
    for shell in shells:
        if name in shell.names():
            raise SnapshotError(
                f"a snapshot named [{name}] already exists on node [{shell.node.name}] "
                f"({shell.path(name)})",
                "give another --name, or delete that snapshot (and its .sha256) first")
    order = sorted(shells, key=lambda s: not member_healthy(prepared, s.node.name))
    source: NodeShell | None = None
    data, digest, why = b"", "", []
    for shell in order:
        progress.info(f"Saving snapshot [{name}] on etcd node [{shell.node.name}]", PHASE)
        started = progress.elapsed_s
        try:
            digest = shell.save(name)
            data = shell.read(shell.path(name)) or b""
        except SnapshotNodeError as exc:
            progress.warn(str(exc), PHASE)
            why.append(str(exc))
            continue
        source = shell
        progress.info(f"Snapshot [{name}] saved on node [{shell.node.name}]: "
                      f"{shell.path(name)} ({_size(len(data))}, sha256 {digest[:12]}…) "
                      f"({progress.elapsed_s - started:.1f}s)", PHASE)
        break
    if source is None:
        raise SnapshotError(f"no etcd member could take the snapshot: {'; '.join(why)}",
                            "check that the etcd members are healthy (`corral up --dry-run` "
                            "probes them), then try again")
    done, failed = [source.node.name], []
    for shell in shells:
        if shell is source:
            continue
        progress.info(f"Copying snapshot [{name}] to node [{shell.node.name}]", PHASE)
        try:
            shell.put(name, data, digest)
            if not shell.copy_of(name).good:
                raise SnapshotNodeError(shell.node.name, "the copy does not match its checksum")
        except (SnapshotNodeError, OSError) as exc:
            reason = exc.message if isinstance(exc, SnapshotNodeError) else str(exc)
            progress.warn(f"node [{shell.node.name}]: cannot store the snapshot: {reason}",
                          PHASE)
            failed.append(f"node [{shell.node.name}]: {reason}")
            continue
        done.append(shell.node.name)
    return Saved(name, len(data), digest, tuple(done), tuple(failed))


def default_name(now: datetime | None = None) -> str:
    """RKE's manner: the time, `corral_etcd_snapshot_2026-12-01T23:30:00Z`."""
    from corral.install.etcd_snapshot_files import manual_name

    return manual_name(now or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Listed:
    """One snapshot name and, per etcd node, its copy there: `ok`, `bad checksum`,
    `no checksum`, or absent."""

    name: str
    copies: tuple[tuple[str, str], ...]  # (node, condition) for the nodes that have it
    size: int = 0


def list_snapshots(prepared: Prepared) -> list[Listed]:
    """Every snapshot on any etcd node, sorted by name, each copy checked."""
    shells = etcd_shells(prepared)
    by_name: dict[str, list[tuple[str, str]]] = {}
    sizes: dict[str, int] = {}
    for shell in shells:
        for name in shell.names():
            copy = shell.copy_of(name)
            condition = "ok" if copy.good else (
                "no checksum" if copy.recorded is None else "bad checksum")
            by_name.setdefault(name, []).append((shell.node.name, condition))
            if name not in sizes:
                sizes[name] = len(shell.read(shell.path(name)) or b"")
    return [Listed(n, tuple(by_name[n]), sizes.get(n, 0)) for n in sorted(by_name)]


def render_list(listed: Sequence[Listed], nodes: Sequence[str]) -> list[str]:
    """The table `snapshot-list` prints: name, size, and each node's copy."""
    if not listed:
        return ["No snapshots on the etcd nodes (take one with `corral etcd snapshot-save`)"]
    width = max(len("NAME"), *(len(item.name) for item in listed))
    lines = [f"{'NAME':<{width}}  {'SIZE':>8}  NODES"]
    for item in listed:
        have = dict(item.copies)
        shown = [n if have.get(n) == "ok" else f"{n} ({have[n]})" for n in nodes if n in have]
        missing = [n for n in nodes if n not in have]
        tail = f"; missing on {', '.join(missing)}" if missing else ""
        lines.append(f"{item.name:<{width}}  {_size(item.size):>8}  {', '.join(shown)}{tail}")
    return lines


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{size / 1024:.0f} kB"
