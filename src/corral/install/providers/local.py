"""The `local` provider: every node of the cluster file on this machine.

Each node is one loopback address (127.0.0.0/8, e.g. 127.0.1.1-3): its services bind that
address, so three nodes use the same ports side by side. Each node has its own directory,
`<base>/nodes/<node>/` (base: `<stem>.corral/` beside the cluster file, or `--state-dir`),
holding its certificates, data, configuration, logs and supervisor files; the external load
balancer has `<base>/lb/`. Supervisors run in their own sessions, so they and the services
keep running after `corral up` returns.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from corral.install.desired import DesiredCluster, NodeSpec
from corral.install.ingress_file import INGRESS_PORT
from corral.install.providers.base import FileSpec, NodePaths, Provider, ProviderError
from corral.install.supervisor import NODE_DIR_ENV, lock_is_free

START_TIMEOUT_S = 15.0
POLL_S = 0.05
LOCAL_LB_SOURCE = "127.0.0.1"  # the source address of connections to 127.x made here
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


def directory_name(node: str) -> str:
    """A node's directory name: its name with anything but letters, digits, `._-` as `_`."""
    return _UNSAFE.sub("_", node) or "_"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class LocalProvider(Provider):
    """Nodes as directories and processes on this machine."""

    name = "local"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir.resolve()

    def check_node(self, node: NodeSpec) -> list[str]:
        """A local node is one loopback address: address (and internal_address) in 127/8."""
        problems: list[str] = []
        for key, value in (("address", node.address), ("internal_address", node.internal_address)):
            if not _loopback(value):
                problems.append(
                    f"node {node.name}: {key} {value} is not a loopback address: the local "
                    "provider runs every node on this machine, each on its own 127.x address "
                    "(e.g. 127.0.1.1, 127.0.1.2, 127.0.1.3)"
                )
        if not problems and node.address != node.internal_address:
            problems.append(
                f"node {node.name}: address {node.address} and internal_address "
                f"{node.internal_address} differ: a local node is one address; remove "
                "internal_address or make it equal to address"
            )
        return problems

    def node_paths(self, name: str) -> NodePaths:
        """`<base>/nodes/<name>`."""
        return NodePaths(self.base_dir / "nodes" / directory_name(name))

    def lb_paths(self) -> NodePaths:
        """`<base>/lb`."""
        return NodePaths(self.base_dir / "lb")

    def trusted_proxies(self, desired: DesiredCluster) -> tuple[str, ...]:
        """The local load balancer's connections to the nodes come from 127.0.0.1."""
        return (LOCAL_LB_SOURCE,)

    def ingress_endpoint(self, node: NodeSpec) -> str:
        """The node's address, port 80."""
        return f"{node.internal_address}:{INGRESS_PORT}"

    def write_files(self, paths: NodePaths, files: Mapping[str, FileSpec]) -> None:
        """Write each file atomically with its mode; an identical file is left alone."""
        paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for relative, spec in files.items():
            target = paths.root / relative
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(OSError):
                if target.read_bytes() == spec.content and (target.stat().st_mode & 0o777) == (
                    spec.mode
                ):
                    continue
            tmp = target.with_name(f".{target.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
            try:
                os.fchmod(fd, spec.mode)
                os.write(fd, spec.content)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)

    def supervisor_running(self, paths: NodePaths) -> bool:
        """True while a supervisor holds the node's lock."""
        return paths.run.is_dir() and not lock_is_free(paths)

    def _supervisor_pid(self, paths: NodePaths) -> int | None:
        try:
            pid = int(paths.supervisor_pid.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = proc.cmdline()
        except psutil.Error:
            return None
        return pid if "supervise" in cmdline and str(paths.root) in cmdline else None

    def start_supervisor(self, paths: NodePaths) -> None:
        """`corral supervise --node-dir <root>` in its own session; waits until it holds the
        node's lock."""
        paths.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {k: v for k, v in os.environ.items() if k != NODE_DIR_ENV}
        log_path = paths.log("supervisor")
        argv = [sys.executable, "-m", "corral.cli.main", "supervise", "--node-dir", str(paths.root)]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=paths.root, env=env, start_new_session=True, close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.supervisor_running(paths) or self._supervisor_pid(paths) is None:
            if proc.poll() is not None:
                raise ProviderError(
                    f"the supervisor in {paths.root} exited at once (code {proc.returncode}); "
                    f"its log {log_path} ends:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"the supervisor in {paths.root} did not start within {START_TIMEOUT_S:g}s; "
                    f"see {log_path}"
                )
            time.sleep(POLL_S)

    def reload_supervisor(self, paths: NodePaths) -> None:
        """SIGHUP to the running supervisor."""
        pid = self._supervisor_pid(paths)
        if pid is None:
            raise ProviderError(f"no supervisor runs in {paths.root}: run `corral up` again")
        os.kill(pid, signal.SIGHUP)

    def stop_node(self, paths: NodePaths, timeout_s: float) -> int:
        """SIGTERM the supervisor and wait for it; SIGKILL whatever of the node is left."""
        pid = self._supervisor_pid(paths)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL_S)
        killed = 0
        for leftover in self.node_processes(paths):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(leftover, signal.SIGKILL)
                killed += 1
        deadline = time.monotonic() + timeout_s
        while self.node_processes(paths) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        return killed

    def delete_node(self, paths: NodePaths) -> None:
        """Remove the node's directory tree."""
        shutil.rmtree(paths.root, ignore_errors=True)

    def node_processes(self, paths: NodePaths) -> list[int]:
        """The supervisor and every process started with the node's CORRAL_NODE_DIR."""
        root = str(paths.root)
        pids: list[int] = []
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get(NODE_DIR_ENV) == root:
                    pids.append(proc.pid)
                    continue
                cmdline = proc.cmdline()
                if "supervise" in cmdline and root in cmdline:
                    pids.append(proc.pid)
            except (psutil.Error, OSError):
                continue
        return pids
