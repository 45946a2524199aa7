"""`corral etcd snapshot-restore` (RKE's `rke etcd snapshot-restore`): the whole cluster back to
one snapshot.

1. **Check.** Every etcd node's copy of the snapshot is checked against its checksum file; a
   bad copy stops the restore before anything changes. The bytes of the first good copy (in
   file order) are what every member is restored from: a node without the snapshot gets a copy
   (with its checksum file), and a node whose snapshot of that name differs (a recurring
   snapshot each node took itself) is given the source's bytes in a temporary file.
2. **Stop** every node at once (its supervisor stops the ingress, the server and the etcd
   member), so no server keeps the newer data in memory or writes it back.
3. **Restore** every member with `etcdctl snapshot restore`: its member name, its peer URL, the
   initial cluster of all members and a new cluster token, into a new data directory that
   replaces the member's (the old one is kept as `etcd.before-restore`).
4. **Start** every node's supervisor again and wait until every service, and the external load
   balancer, answers its health check.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from corral.install.etcd_snapshot_node import NodeShell, SnapshotNodeError
from corral.install.etcd_snapshot_save import PHASE, SnapshotError, etcd_shells
from corral.install.outputs import CHECK_INTERVAL_S, CHECK_RISE
from corral.install.prepare import Prepared, probe_for
from corral.install.probes import check
from corral.install.progress import Progress
from corral.install.providers.base import ProviderError
from corral.install.services import etcd_peer_url, member_name
from corral.install.state import LB_NODE

STOP_TIMEOUT_S = 20.0
HEALTHY_TIMEOUT_S = 120.0
POLL_S = 0.2
LB_STEADY_S = (CHECK_RISE + 1) * CHECK_INTERVAL_S  # each lb worker's checks rise by then
STAGED_PREFIX = ".restore-"  # the source's bytes on a node whose own snapshot differs


@dataclass(frozen=True, slots=True)
class Restored:
    """What the restore did."""

    name: str
    digest: str
    source: str  # the node whose copy every member was restored from
    copied_to: tuple[str, ...]
    took_s: float


def _checked(shells: list[NodeShell], name: str) -> tuple[NodeShell, str]:
    """The node whose copy the members are restored from, and its sha256; SnapshotError for
    an unknown name or a bad copy."""
    copies = {shell.node.name: shell.copy_of(name) for shell in shells}
    if not any(c.exists for c in copies.values()):
        known = sorted({n for shell in shells for n in shell.names()})
        listing = ", ".join(known) if known else "none"
        raise SnapshotError(
            f"no snapshot named [{name}] on any etcd node (snapshots there: {listing})",
            "give one of those names to --name (`corral etcd snapshot-list` shows them with "
            "their nodes), or take one with `corral etcd snapshot-save`")
    bad: list[str] = []
    for shell in shells:
        copy = copies[shell.node.name]
        if not copy.exists:
            continue
        where = shell.path(name)
        if copy.recorded is None:
            bad.append(f"node [{shell.node.name}]: {where}.sha256 is missing or holds no "
                       "sha256")
        elif not copy.good:
            bad.append(f"node [{shell.node.name}]: {where} does not match its checksum "
                       f"(sha256 {copy.actual[:12]}…, {where.name}.sha256 says "
                       f"{copy.recorded[:12]}…)")
    if bad:
        raise SnapshotError(
            f"snapshot [{name}] fails its checksum check: {'; '.join(bad)}; nothing was changed",
            "restore another snapshot, or delete the damaged copy (the file and its .sha256) "
            "so the restore copies a good node's copy there")
    source = next(s for s in shells if copies[s.node.name].good)
    return source, copies[source.node.name].actual


def _spread(shells: list[NodeShell], source: NodeShell, name: str, digest: str,
            progress: Progress) -> tuple[dict[str, Path], list[str]]:
    """Give every node the source's bytes: node → the file it restores from, and the nodes a
    copy went to."""
    files = {source.node.name: source.path(name)}
    copied: list[str] = []
    data: bytes | None = None
    for shell in shells:
        if shell is source:
            continue
        copy = shell.copy_of(name)
        if copy.good and copy.actual == digest:
            files[shell.node.name] = shell.path(name)
            continue
        if data is None:
            data = source.read(source.path(name)) or b""
        if not copy.exists:
            progress.info(f"Snapshot [{name}] is missing on node [{shell.node.name}]: copying "
                          f"it from node [{source.node.name}]", PHASE)
            shell.put(name, data, digest)
            files[shell.node.name] = shell.path(name)
        else:
            progress.info(f"Node [{shell.node.name}]'s snapshot [{name}] is its own: every "
                          f"member is restored from node [{source.node.name}]'s", PHASE)
            staged = shell.path(STAGED_PREFIX + name)
            shell.write(staged, data)
            files[shell.node.name] = staged
        if shell.sha256(files[shell.node.name]) != digest:
            raise SnapshotError(f"node [{shell.node.name}]: the copy of snapshot [{name}] does "
                                "not match the source's checksum; nothing was changed",
                                "check the node's disk, then try again")
        copied.append(shell.node.name)
    return files, copied


def _each(keys: Iterable[str], function: Callable[[str], object]) -> None:
    """Run `function(key)` for every key at once; the first error is raised."""
    items = list(keys)
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        for future in [pool.submit(function, key) for key in items]:
            future.result()


def restore_snapshot(prepared: Prepared, name: str, progress: Progress) -> Restored:
    """Restore the cluster to snapshot `name` (see the module's docstring for the steps)."""
    started = time.monotonic()
    provider = prepared.provider
    shells = etcd_shells(prepared)
    for shell in shells:
        progress.info(f"Checking snapshot [{name}] on node [{shell.node.name}]", PHASE)
    source, digest = _checked(shells, name)
    progress.info(f"Snapshot [{name}] checked: sha256 {digest[:12]}…, restoring from node "
                  f"[{source.node.name}]'s copy", PHASE)
    files, copied = _spread(shells, source, name, digest, progress)

    nodes = {n: prepared.provider.node_paths(n) for n in prepared.nodes}

    for node in nodes:
        progress.info(f"Stopping the services of node [{node}]", "stop")
    _each(nodes, lambda node: provider.stop_node(nodes[node], STOP_TIMEOUT_S))

    by_name = {shell.node.name: shell for shell in shells}
    members = [shell.node for shell in shells]  # every etcd node of the file, in its order
    initial = ",".join(f"{member_name(m.name)}={etcd_peer_url(m)}" for m in members)
    token = f"{prepared.state.etcd_token}-restore-{secrets.token_hex(4)}"

    def restore(node: str) -> None:
        shell = by_name[node]
        shell.restore(files[node], initial, token)
        if files[node].name.startswith(STAGED_PREFIX):
            shell.remove(files[node])

    for node in by_name:
        progress.info(f"Restoring etcd member [{member_name(node)}] on node [{node}] from "
                      f"snapshot [{name}]", PHASE)
    try:
        _each(by_name, restore)
    except SnapshotNodeError as exc:
        raise SnapshotError(
            f"{exc}; the nodes are stopped (a member already restored keeps its previous "
            f"data beside its data directory, e.g. {nodes[exc.node].etcd_data}.before-restore)",
            f"fix what the message says and run `corral etcd snapshot-restore --name {name}` "
            "again, or put the previous data back and run `corral up`") from None

    for node in nodes:
        progress.info(f"Starting the services of node [{node}]", "start")
    try:
        _each(nodes, lambda node: provider.start_supervisor(nodes[node]))
    except ProviderError as exc:
        raise SnapshotError(f"every member was restored from snapshot [{name}], but a node "
                            f"did not start: {exc}",
                            f"run `corral up --config {prepared.desired.source}`: it starts "
                            "what is down") from None
    asyncio.run(_wait_healthy(prepared, progress))
    return Restored(name, digest, source.node.name, tuple(copied), time.monotonic() - started)


async def _wait_healthy(prepared: Prepared, progress: Progress) -> None:
    """Every service of every node, then the external load balancer, answers its probe."""
    from corral.install.plan import TITLES

    provider = prepared.provider

    async def one(node: str, service: str, steady_s: float = 0.0) -> None:
        spec = next(s for s in prepared.services[node] if s.name == service)
        paths = provider.lb_paths() if node == LB_NODE else provider.node_paths(node)
        probe = probe_for(provider, paths, spec.health)
        began = time.monotonic()
        detail, good_since = "not probed", None
        while time.monotonic() - began < HEALTHY_TIMEOUT_S:
            ok, detail = await check(probe)
            now = time.monotonic()
            good_since = (good_since or now) if ok else None
            if good_since is not None and now - good_since >= steady_s:
                where = "" if node == LB_NODE else f" on node [{node}]"
                progress.info(f"{TITLES.get(service, service)}{where} is healthy "
                              f"({now - began:.1f}s)", "healthcheck")
                return
            await asyncio.sleep(POLL_S)
        raise SnapshotError(
            f"node [{node}]: {TITLES.get(service, service)} not healthy after "
            f"{HEALTHY_TIMEOUT_S:g}s: {detail}",
            f"see {paths.log(service)}; `corral up --config {prepared.desired.source}` starts "
            "what is down")

    for group in (("etcd",), ("server", "ingress")):
        await asyncio.gather(*(one(node, spec.name)
                               for node, specs in prepared.services.items()
                               for spec in specs if spec.name in group))
    if LB_NODE in prepared.services:  # every lb worker checks the ingresses on its own: answering
        await one(LB_NODE, "lb", LB_STEADY_S)  # for this long, every one has seen them rise
