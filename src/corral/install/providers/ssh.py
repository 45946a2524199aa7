"""The `ssh` provider (RKE's way): every node is a Linux host reached over SSH (asyncssh).

Each node's files are where a Linux service keeps them: /etc/corral (certificates, the ingress
configuration), /var/lib/corral (etcd's and the server's data, the supervisor's run/ files),
/var/log/corral (the logs) and /opt/corral (the releases: Corral's venv and etcd, installed
from the offline bundle, `corral.install.bundle`). Before anything changes every node is
checked (`corral.install.preflight`); then the bundle is shipped over SFTP and installed, and
the supervisor runs there as a systemd unit where systemd runs the node, else as a background
process in its own session. What runs on the node is `corral.install.node_ops` (standard
library only), sent on stdin to the node's python3. The external load balancer runs on this
machine, as with the local provider. All nodes are worked on at once: how each is reached (one
connection each, through the bastion host's when there is one) is `ssh_link`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncssh

from corral.install import preflight as checks
from corral.install.bundle import Bundle, BundleError, build_bundle
from corral.install.desired import DesiredCluster, NodeSpec
from corral.install.ingress_file import INGRESS_PORT
from corral.install.progress import Progress
from corral.install.providers.base import FileSpec, NodePaths, NodeProblem, Provider, ProviderError
from corral.install.providers.local import LocalProvider, directory_name
from corral.install.providers.ssh_link import Link, NodeLinks
from corral.install.providers.ssh_setup import check_node, install_release
from corral.install.providers.ssh_support import (
    CALL_TIMEOUT_S,
    SUPERVISOR_ENV,
    node_ops_source,
    remote_paths,
    source_address,
    supervisor_unit,
)
from corral.install.ssh_connect import SshFailure

__all__ = ["Link", "SshProvider"]

INSTALL_TIMEOUT_S = 600.0
UNIT = "corral-supervisor"
MIRRORED = ("pki/",)  # node files this machine keeps a copy of, for its own probes


class SshProvider(Provider):
    """Nodes as SSH hosts; the external load balancer on this machine."""

    name = "ssh"

    def __init__(self, desired: DesiredCluster, base_dir: Path) -> None:
        self.desired = desired
        self.local = LocalProvider(base_dir)
        self.base_dir = base_dir.resolve()
        self.links = NodeLinks(desired)  # how each node is reached
        self.nodes = self.links.nodes  # the links' own dict (`adopt` adds to it)
        self.keys = self.links.keys
        self._bundle: Bundle | None = None
        self._offsets: dict[str, float] = {}
        self._ops = node_ops_source()

    # -- plumbing -------------------------------------------------------------------------

    def bundle(self) -> Bundle:
        """The offline bundle of this run (built once, cached)."""
        if self._bundle is None:
            try:
                self._bundle = build_bundle(self._registry())
            except BundleError as exc:
                raise ProviderError(f"the offline bundle: {exc}") from None
        return self._bundle

    def _registry(self) -> str:
        url = self.desired.private_registry
        if not url or "://" in url:
            return url
        return f"https://{url.rstrip('/')}/simple/"

    async def link(self, name: str) -> Link:
        """Node `name`'s connection and SFTP session (made on first use)."""
        return await self.links.link(name)

    async def op(self, name: str, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run node operation `op` (corral.install.node_ops) on node `name`; its answer."""
        link = await self.link(name)
        command = f"python3 - {op} {shlex.quote(json.dumps(args))}"
        done = await link.conn.run(command, input=self._ops, check=False)
        out = str(done.stdout or "").strip().splitlines()
        if not out and (done.returncode is None or link.conn.is_closed()):
            raise self.links.lost(name, f"running `{op}` there", "the connection was lost")
        try:
            result: dict[str, Any] = json.loads(out[-1])
        except (IndexError, ValueError):
            result = {"error": (str(done.stderr or "") or str(done.stdout or ""))[-500:]}
        if "error" in result:
            raise ProviderError(f"node [{name}]: {op} failed: {result['error']}")
        return result

    def run_command(self, name: str, command: str, timeout: float) -> tuple[int, str]:
        """`command` through node `name`'s shell, within `timeout` seconds: its exit status
        and its output (stdout then stderr). SSH failures raise as they come."""

        async def go() -> tuple[int, str]:
            done = await (await self.link(name)).conn.run(command, check=False)
            return int(done.exit_status or 0), str(done.stdout or "") + str(done.stderr or "")

        return self.links.run(go(), timeout)

    def write_file(self, name: str, path: str, data: bytes, mode: int, timeout: float) -> None:
        """`data` into `path` on node `name` over SFTP: a temporary file beside it, fsync,
        `mode`, rename (a reader never sees half a file). SSH failures raise as they come."""

        async def go() -> None:
            sftp = (await self.link(name)).sftp
            parent, _, base = path.rpartition("/")
            await sftp.makedirs(parent or "/", exist_ok=True)
            tmp = f"{parent}/.{base}.tmp"
            async with sftp.open(tmp, "wb") as out:
                await out.write(data)
                await out.fsync()
            await sftp.chmod(tmp, mode)
            await sftp.posix_rename(tmp, path)

        self.links.run(go(), timeout)

    def _node_op(self, paths: NodePaths, op: str, **args: Any) -> dict[str, Any]:
        return self.links.remote(paths.node, f"running `{op}` there",
                                 self.op(paths.node, op, {"root": str(paths.root), "unit": UNIT,
                                                          **args}))

    # -- what corral up asks --------------------------------------------------------------

    def adopt(self, node: NodeSpec) -> None:
        """Log in to `node` (gone from the cluster file) with the login the state file kept."""
        self.links.adopt(node)

    def check_node(self, node: NodeSpec) -> list[str]:
        """Nothing to check without the node: the preflight asks it."""
        return []

    def node_paths(self, name: str) -> NodePaths:
        """/var/lib/corral, /etc/corral and /var/log/corral on node `name`."""
        return remote_paths(name)

    def lb_paths(self) -> NodePaths:
        """`<base>/lb` on this machine."""
        return self.local.lb_paths()

    def trusted_proxies(self, desired: DesiredCluster) -> tuple[str, ...]:
        """This machine's address towards each worker (the load balancer runs here)."""
        found: set[str] = set()
        for node in desired.nodes_with("worker"):
            with contextlib.suppress(OSError):
                found.add(source_address(node.address))
        return tuple(sorted(found))

    def ingress_endpoint(self, node: NodeSpec) -> str:
        """The node's address (the one this machine reaches it at), port 80."""
        host = f"[{node.address}]" if ":" in node.address else node.address
        return f"{host}:{INGRESS_PORT}"

    def corral_command(self) -> tuple[str, ...]:
        """The release's python running corral."""
        return (f"{self.bundle().release}/venv/bin/python", "-m", "corral.cli.main")

    def etcd_binary(self) -> str:
        """The release's etcd."""
        return f"{self.bundle().release}/bin/etcd"

    def node_time(self, paths: NodePaths) -> float:
        """This machine's clock corrected by the node's offset (measured in preflight)."""
        return time.time() + self._offsets.get(paths.node, 0.0)

    def mirror(self, name: str) -> Path:
        """Where this machine keeps its copy of node `name`'s certificates."""
        return self.base_dir / "nodes" / directory_name(name)

    def local_path(self, paths: NodePaths, path: str) -> str:
        """A file under the node's /etc/corral → this machine's copy of it."""
        if not paths.node or not path:
            return path
        with contextlib.suppress(ValueError):
            return str(self.mirror(paths.node) / Path(path).relative_to(paths.config))
        return path

    # -- preflight and install --------------------------------------------------------------

    def preflight(self, desired: DesiredCluster, progress: Progress) -> list[NodeProblem]:
        """Every node at once: login, python3, rights, ports, disk; then the clocks."""
        bundle = self.bundle()
        if self.keys.checking == "off":
            progress.warn("host keys are not checked (ssh_strict_host_key_checking: false): "
                          "anyone between here and the nodes can pose as them", "preflight")
        progress.info(f"Offline bundle {bundle.digest} ({bundle.size / 1e6:.0f} MB: "
                      f"{bundle.requirement}, {len(bundle.files)} files) in {bundle.directory}",
                      "preflight")

        async def every() -> list[tuple[list[NodeProblem], tuple[float, float, float] | None]]:
            return list(await asyncio.gather(*(check_node(self, n, bundle, progress)
                                               for n in desired.nodes)))

        found = self.links.run(every(), CALL_TIMEOUT_S)
        problems = [p for node_problems, _ in found for p in node_problems]
        readings = {node.name: reading for node, (_, reading) in zip(desired.nodes, found,
                                                                      strict=True) if reading}
        self._offsets = checks.clock_offsets(readings)
        return problems + checks.clock_problems(self._offsets,
                                                errors=checks.clock_errors(readings))

    def install(self, progress: Progress) -> None:
        """Ship the bundle to every node that lacks its release and install it, all at once."""
        bundle = self.bundle()

        async def every() -> None:  # every node finishes (or fails) before one is reported
            done = await asyncio.gather(*(install_release(self, name, bundle, progress)
                                          for name in self.nodes), return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome

        from corral.install.apply import ApplyError

        try:
            self.links.run(every(), INSTALL_TIMEOUT_S)
        except SshFailure as exc:
            raise ProviderError(f"{exc.message} — fix: {exc.fix}") from None
        except (ProviderError, OSError, asyncssh.Error, TimeoutError) as exc:
            lost = self.links.closed()
            if not lost:
                raise
            name = lost[0]
            node = self.nodes[name]
            raise ApplyError(
                "bundle", name,
                f"{node.user}@{node.address}:{node.port} stopped answering while "
                f"{bundle.requirement} was being shipped or installed there "
                f"({str(exc) or type(exc).__name__}). Half-done: an incomplete release in "
                f"{bundle.release} on node [{name}] (installed again next time); no service "
                "was started on any node",
                f"bring node [{name}] back (is it up, does its sshd answer `ssh -p {node.port} "
                f"{node.user}@{node.address} true`?)") from None

    # -- files and the supervisor ---------------------------------------------------------

    def write_files(self, paths: NodePaths, files: Mapping[str, FileSpec]) -> None:
        """Over SFTP, each atomically (temporary file, fsync, rename); an identical file is
        left alone. Certificates are also copied here, for this machine's probes."""
        if not paths.node:
            self.local.write_files(paths, files)
            return
        self.links.remote(paths.node, f"writing {', '.join(sorted(files))} there",
                          self._write(paths, files))
        mirrored = {r: s for r, s in files.items() if r.startswith(MIRRORED)}
        if mirrored:
            self.local.write_files(NodePaths(self.mirror(paths.node)), mirrored)

    async def _write(self, paths: NodePaths, files: Mapping[str, FileSpec]) -> None:
        sftp = (await self.link(paths.node)).sftp

        async def one(relative: str, spec: FileSpec) -> None:
            target = str(paths.file(relative))
            with contextlib.suppress(asyncssh.SFTPError):
                attrs = await sftp.stat(target)
                if attrs.size == len(spec.content) and (attrs.permissions or 0) & 0o777 == (
                        spec.mode):
                    async with sftp.open(target, "rb") as current:
                        existing: Any = await current.read()  # bytes in "rb" mode
                        if existing == spec.content:
                            return
            directory, _, base = target.rpartition("/")
            await sftp.makedirs(directory, attrs=asyncssh.SFTPAttrs(permissions=0o700),
                                exist_ok=True)
            tmp = f"{directory}/.{base}.tmp"
            async with sftp.open(tmp, "wb",
                                 asyncssh.SFTPAttrs(permissions=spec.mode)) as out:
                await out.write(spec.content)
                await out.fsync()
            await sftp.chmod(tmp, spec.mode)
            await sftp.posix_rename(tmp, target)

        await asyncio.gather(*(one(r, s) for r, s in files.items()))

    def read_file(self, paths: NodePaths, path: Path) -> bytes | None:
        """Over SFTP (None when the file does not exist)."""
        if not paths.node:
            return self.local.read_file(paths, path)
        return self.links.remote(paths.node, f"reading {path} there",
                                 self._read(paths.node, str(path)))

    async def _read(self, name: str, path: str) -> bytes | None:
        sftp = (await self.link(name)).sftp
        try:
            async with sftp.open(path, "rb") as file:
                data: Any = await file.read()  # bytes in "rb" mode
                return bytes(data)
        except asyncssh.SFTPError:
            return None

    def supervisor_running(self, paths: NodePaths) -> bool:
        """The node's supervisor holds its lock."""
        if not paths.node:
            return self.local.supervisor_running(paths)
        return bool(self._node_op(paths, "running")["running"])

    def start_supervisor(self, paths: NodePaths) -> None:
        """As a systemd unit where systemd runs the node, else a background process; waits
        until it holds the node's lock."""
        if not paths.node:
            self.local.start_supervisor(paths)
            return
        argv = (*self.corral_command(), "supervise", "--node-dir", str(paths.root),
                "--log-dir", str(paths.logs))
        log = str(paths.log("supervisor"))
        link = self.links.made(paths.node)
        systemd = bool(link and link.facts.get("systemd"))
        result = self._node_op(paths, "start", argv=list(argv), log=log, env=SUPERVISOR_ENV,
                               systemd=systemd, unit_text=supervisor_unit(argv, log))
        if not result.get("ok"):
            why = (f"did not hold its lock within {result['timeout']:g}s" if "timeout" in result
                   else f"exited at once (code {result.get('code')})")
            raise ProviderError(f"node [{paths.node}]: the supervisor {why}; {log} ends:\n"
                                f"{result.get('log', '')}")

    def reload_supervisor(self, paths: NodePaths) -> None:
        """SIGHUP to the node's supervisor."""
        if not paths.node:
            self.local.reload_supervisor(paths)
            return
        if not self._node_op(paths, "reload").get("ok"):
            raise ProviderError(f"node [{paths.node}]: no supervisor runs: run `corral up` "
                                "again")

    def stop_node(self, paths: NodePaths, timeout_s: float) -> int:
        """Stop the supervisor (it stops the services), then kill what is left of the node."""
        if not paths.node:
            return self.local.stop_node(paths, timeout_s)
        return int(self._node_op(paths, "stop", timeout=timeout_s)["killed"])

    def delete_node(self, paths: NodePaths) -> None:
        """Empty /etc/corral, /var/lib/corral, /var/log/corral and /opt/corral on the node."""
        if not paths.node:
            self.local.delete_node(paths)
            return
        self._node_op(paths, "delete", dirs=list(checks.INSTALL_DIRS))
        self.local.delete_node(NodePaths(self.mirror(paths.node)))

    def node_processes(self, paths: NodePaths) -> list[int]:
        """The node's supervisor and every process it started."""
        if not paths.node:
            return self.local.node_processes(paths)
        return [int(p) for p in self._node_op(paths, "processes")["pids"]]

    def hang_up(self, paths: NodePaths, pid: int) -> list[int]:
        """SIGHUP to process `pid` on the node, by the node's operations; its children."""
        if not paths.node:
            return self.local.hang_up(paths, pid)
        return [int(p) for p in self._node_op(paths, "hang_up", pid=pid)["children"]]

    def still_running(self, paths: NodePaths, pids: Sequence[int]) -> list[int]:
        """Those of `pids` that still run on the node."""
        if not paths.node:
            return self.local.still_running(paths, pids)
        if not pids:
            return []
        return [int(p) for p in self._node_op(paths, "still_running", pids=list(pids))["pids"]]

    def close(self) -> None:
        """Close every connection and stop the loop."""
        self.links.close()
