"""What the SSH provider needs besides its class: the node layout, the systemd unit of the
supervisor, the script node operations run, this machine's address towards a node, and an
event loop in a thread of its own (asyncssh is asynchronous; `corral up` calls from threads).
"""

from __future__ import annotations

import asyncio
import shlex
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from corral.install import preflight as checks
from corral.install.ingress_file import INGRESS_PORT
from corral.install.providers.base import NodePaths

T = TypeVar("T")
CALL_TIMEOUT_S = 120.0
SUPERVISOR_ENV = {"PYTHONUNBUFFERED": "1"}


def node_ops_source() -> str:
    """The script every node operation runs."""
    return resources.files("corral.install").joinpath("node_ops.py").read_text()


def remote_paths(name: str) -> NodePaths:
    """The directories of an SSH node (the same on every node)."""
    return NodePaths(Path(checks.DATA_DIR), node=name, config_root=Path(checks.CONFIG_DIR),
                     log_root=Path(checks.LOG_DIR), rootfs_root=Path("/"))


def supervisor_unit(argv: tuple[str, ...], log: str) -> str:
    """The systemd unit that runs a node's supervisor (where systemd runs the node)."""
    return (
        "[Unit]\nDescription=Corral node supervisor (services of corral up)\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        f"[Service]\nExecStart={shlex.join(argv)}\n"
        + "".join(f"Environment={k}={v}\n" for k, v in SUPERVISOR_ENV.items())
        + f"Restart=always\nRestartSec=2\nKillMode=mixed\nTimeoutStopSec=30\n"
        f"StandardOutput=append:{log}\nStandardError=inherit\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def source_address(address: str) -> str:
    """The address this machine's connections to `address` come from (a UDP connect sends
    nothing; it only asks the routing table)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((address, INGRESS_PORT))
        return str(probe.getsockname()[0])


class EventLoopThread:
    """An event loop in a daemon thread; `run` waits for a coroutine from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="corral-ssh",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run `coro` on the loop and wait for its result (its exception is raised here)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
