"""The provider interface: how `corral up` reaches a node (its files and its supervisor).

A provider knows where a node's directories are, writes the files its services need, and starts,
reloads and stops the node's supervisor (`corral.install.supervisor`), which runs the services.
Everything above it (plan, apply) is the same for every provider. A provider that reaches its
nodes over a network (`ssh`) also checks them before anything changes (`preflight`), installs
Corral on them (`install`), reads their files (`read_file`) and says where this machine keeps a
copy of the files its own probes need (`local_path`); the defaults are those of this machine.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from corral.install.desired import DesiredCluster, NodeSpec

if TYPE_CHECKING:
    from corral.install.progress import Progress

LOCAL_ETCD_BINARY = "/usr/bin/etcd"
CONFIG_DIRS = ("pki", "server-tls", "ingress")  # relative paths that go under `config`


class ProviderError(Exception):
    """A node cannot be reached or prepared; the message names the node and the fix."""


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file a service needs, relative to the node's directory, and its mode."""

    content: bytes
    mode: int = 0o600


@dataclass(frozen=True, slots=True)
class NodeProblem:
    """What stops a node before anything changes (a preflight failure): the node, what is
    wrong, and the fix."""

    node: str
    message: str
    fix: str

    def line(self) -> str:
        """`node [name]: message — fix: fix`."""
        return f"node [{self.node}]: {self.message} — fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class NodePaths:
    """The directories and files of one node (or of the external load balancer).

    By default every path is under `root` (the local provider's one directory per node); a
    node reached over SSH splits them the usual Linux way: configuration and certificates under
    `config_root` (/etc/corral), logs under `log_root` (/var/log/corral), absolute paths of the
    cluster file at themselves (`rootfs_root` /). Services get absolute paths on their command
    lines. `node` names the node ("" for the external load balancer).
    """

    root: Path
    node: str = ""
    config_root: Path | None = None
    log_root: Path | None = None
    rootfs_root: Path | None = None

    @property
    def config(self) -> Path:
        """Where pki/, server-tls/ and ingress/ are."""
        return self.config_root or self.root

    def file(self, relative: str) -> Path:
        """A file given relative to the node (`pki/ca.pem`, `run/supervisor.json`) as the
        absolute path it has on the node."""
        top = relative.split("/", 1)[0]
        return (self.config if top in CONFIG_DIRS else self.root) / relative

    @property
    def pki(self) -> Path:
        """Certificates and keys from the cluster CA."""
        return self.config / "pki"

    @property
    def etcd_data(self) -> Path:
        """The etcd member's data directory."""
        return self.root / "etcd"

    @property
    def server_data(self) -> Path:
        """`corral server --data-dir`."""
        return self.root / "server"

    @property
    def server_tls(self) -> Path:
        """`corral server --tls-dir` (cert.pem, key.pem, cacerts.pem)."""
        return self.config / "server-tls"

    @property
    def ingress_config(self) -> Path:
        """`corral ingress --config`."""
        return self.config / "ingress" / "ingress.yml"

    @property
    def rootfs(self) -> Path:
        """Where absolute paths of the cluster file (AUDIT_LOG_PATH, …) land on this node."""
        return self.rootfs_root or self.root / "rootfs"

    @property
    def logs(self) -> Path:
        """One log file per service, and the supervisor's."""
        return self.log_root or self.root / "logs"

    def log(self, service: str) -> Path:
        """The log file of `service`."""
        return self.logs / f"{service}.log"

    @property
    def run(self) -> Path:
        """The supervisor's spec, lock, pid and status files."""
        return self.root / "run"

    @property
    def supervisor_spec(self) -> Path:
        """What the supervisor runs (written by `corral up`, read on start and SIGHUP)."""
        return self.run / "supervisor.json"

    @property
    def supervisor_lock(self) -> Path:
        """Held (flock) by the running supervisor: a free lock means none runs."""
        return self.run / "supervisor.lock"

    @property
    def supervisor_pid(self) -> Path:
        """The running supervisor's pid."""
        return self.run / "supervisor.pid"

    @property
    def status(self) -> Path:
        """The supervisor's view of its services (JSON, rewritten after every probe round)."""
        return self.run / "status.json"

    def inside(self, path: str) -> Path:
        """An absolute path of the cluster file as it exists on this node (under `rootfs`)."""
        return self.rootfs / path.lstrip("/")


class Provider(abc.ABC):
    """Reaches the nodes of one cluster."""

    name: str

    @abc.abstractmethod
    def check_node(self, node: NodeSpec) -> list[str]:
        """Problems that stop this provider from running `node` (empty when it can)."""

    @abc.abstractmethod
    def node_paths(self, name: str) -> NodePaths:
        """The directories of node `name`."""

    @abc.abstractmethod
    def lb_paths(self) -> NodePaths:
        """The directories of the external load balancer `corral up` runs."""

    @abc.abstractmethod
    def trusted_proxies(self, desired: DesiredCluster) -> tuple[str, ...]:
        """The addresses the external load balancer's connections come from: the only
        sources whose X-Forwarded-* headers the ingress keeps."""

    @abc.abstractmethod
    def ingress_endpoint(self, node: NodeSpec) -> str:
        """host:port the external load balancer reaches the node's ingress at."""

    @abc.abstractmethod
    def write_files(self, paths: NodePaths, files: Mapping[str, FileSpec]) -> None:
        """Write `files` (paths relative to `paths.root`), creating directories."""

    @abc.abstractmethod
    def supervisor_running(self, paths: NodePaths) -> bool:
        """True while the node's supervisor runs."""

    @abc.abstractmethod
    def start_supervisor(self, paths: NodePaths) -> None:
        """Start the node's supervisor in the background (it outlives `corral up`)."""

    @abc.abstractmethod
    def reload_supervisor(self, paths: NodePaths) -> None:
        """Make the running supervisor read its spec again."""

    @abc.abstractmethod
    def stop_node(self, paths: NodePaths, timeout_s: float) -> int:
        """Stop the supervisor and every process of the node; returns how many were killed
        because they did not stop in time."""

    @abc.abstractmethod
    def delete_node(self, paths: NodePaths) -> None:
        """Delete the node's directories (after `stop_node`)."""

    @abc.abstractmethod
    def node_processes(self, paths: NodePaths) -> list[int]:
        """The pids of every live process of the node (supervisor and services)."""

    # -- what a remote provider does more; the defaults are this machine's ----------------------

    def preflight(self, desired: DesiredCluster, progress: Progress) -> list[NodeProblem]:
        """Check every node before anything changes (reachable, software, rights, ports, disk,
        clock); the problems found (empty: go on)."""
        return []

    def install(self, progress: Progress) -> None:
        """Put Corral and etcd on every node (nothing to do on this machine)."""
        return None

    def adopt(self, node: NodeSpec) -> None:
        """Be able to reach `node`, which left the cluster file, as the state file recorded it
        (to drain and remove it); nothing to do for nodes on this machine."""
        return None

    def read_file(self, paths: NodePaths, path: Path) -> bytes | None:
        """The content of a file of the node (None when it does not exist)."""
        try:
            return path.read_bytes()
        except OSError:
            return None

    def local_path(self, paths: NodePaths, path: str) -> str:
        """Where this machine finds a file of the node that its own probes need (a CA, a
        client certificate): the path itself here."""
        return path

    def node_time(self, paths: NodePaths) -> float:
        """The node's clock now (its supervisor stamps its status file with it)."""
        return time.time()

    def hang_up(self, paths: NodePaths, pid: int) -> list[int]:
        """SIGHUP to process `pid` of the node (a service that re-reads its file on it);
        returns the pids of its children before the signal (a corral lb or ingress: the
        previous workers, which now drain). Nothing happens when `pid` no longer runs."""
        try:
            children = [c.pid for c in psutil.Process(pid).children()]
            os.kill(pid, signal.SIGHUP)
        except (psutil.Error, ProcessLookupError):
            return []
        return children

    def still_running(self, paths: NodePaths, pids: Sequence[int]) -> list[int]:
        """Those of `pids` that still run on the node (a zombie has ended)."""
        alive: list[int] = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return alive

    def corral_command(self) -> tuple[str, ...]:
        """The command that runs `corral` on the nodes."""
        return (sys.executable, "-m", "corral.cli.main")

    def etcd_binary(self) -> str:
        """The etcd binary on the nodes."""
        return LOCAL_ETCD_BINARY

    def close(self) -> None:
        """Let go of connections (nothing to do on this machine)."""
        return None
