"""How the SSH provider reaches a node: one connection and SFTP session per node, made on first
use (through the bastion host's connection when the cluster file names one), on an event loop in
a thread of its own; a lost connection reported as a ProviderError naming the node and the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh

from corral.install import preflight as checks
from corral.install.desired import DesiredCluster, NodeSpec
from corral.install.providers.base import ProviderError
from corral.install.providers.ssh_support import CALL_TIMEOUT_S, EventLoopThread
from corral.install.ssh_connect import HostKeys, SshFailure, SshTarget, connect

T = TypeVar("T")


@dataclass
class Link:
    """One node's connection and SFTP session, and what its checks found."""

    conn: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    facts: dict[str, Any] = field(default_factory=dict)


class NodeLinks:
    """The connections to the cluster file's nodes (and its bastion host), and the loop they
    run on; callers come from several threads at once."""

    def __init__(self, desired: DesiredCluster) -> None:
        self.desired = desired
        self.nodes = {node.name: node for node in desired.nodes}
        self.index = {node.name: i for i, node in enumerate(desired.nodes)}
        self.keys = HostKeys(desired.ssh.known_hosts, desired.ssh.host_key_checking)
        self._loop: EventLoopThread | None = None
        self._loop_lock = threading.Lock()
        self._links: dict[str, Link] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._bastion: asyncssh.SSHClientConnection | None = None

    def adopt(self, node: NodeSpec) -> None:
        """Reach also `node`, which is not (or no longer) in the cluster file; its position in
        messages comes after the file's nodes. A node known already stays as it is."""
        if node.name not in self.nodes:
            self.nodes[node.name] = node
            self.index[node.name] = len(self.index)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """`coro` on the loop (started on first use), within `timeout` seconds; its result."""
        with self._loop_lock:  # callers come from several threads at once
            if self._loop is None:
                self._loop = EventLoopThread()
            loop = self._loop
        return loop.run(coro, timeout)

    def target(self, node: NodeSpec) -> SshTarget:
        """How node `node` is logged in to."""
        return SshTarget(f"node [{node.name}]", node.address, node.port, node.user,
                         node.ssh_key_path, node.ssh_agent_auth, f"nodes[{self.index[node.name]}]")

    async def _tunnel(self) -> asyncssh.SSHClientConnection | None:
        bastion = self.desired.ssh.bastion
        if bastion is None:
            return None
        async with self._locks.setdefault("", asyncio.Lock()):
            if self._bastion is None:
                target = SshTarget("the bastion host", bastion.address, bastion.port,
                                   bastion.user, bastion.ssh_key_path, bastion.ssh_agent_auth,
                                   "bastion_host")
                self._bastion = await connect(target, self.keys)
        return self._bastion

    async def link(self, name: str) -> Link:
        """Node `name`'s connection and SFTP session (made on first use)."""
        if name not in self.nodes:
            raise SshFailure(
                f"node [{name}] is in the state file but no longer in the cluster file, so "
                "Corral does not know how to log in to it",
                "put it back in the file until its services are removed, or stop them on the "
                "node by hand")
        async with self._locks.setdefault(name, asyncio.Lock()):
            link = self._links.get(name)
            if link is None:
                conn = await connect(self.target(self.nodes[name]), self.keys,
                                     await self._tunnel())
                link = Link(conn, await conn.start_sftp_client())
                self._links[name] = link
            return link

    def made(self, name: str) -> Link | None:
        """Node `name`'s link if it has been made (None otherwise; nothing is connected)."""
        return self._links.get(name)

    def closed(self) -> list[str]:
        """The nodes whose connection was made and is now closed, in the order made."""
        return [name for name, link in self._links.items() if link.conn.is_closed()]

    def lost(self, name: str, doing: str, why: str) -> ProviderError:
        """Node `name` stopped answering while `doing`: the node, the step, what this run
        left half-done, and the fix."""
        node = self.nodes.get(name)
        where = f" ({node.user}@{node.address}:{node.port})" if node else ""
        login = f"ssh -p {node.port} {node.user}@{node.address} true" if node else "ssh"
        return ProviderError(
            f"node [{name}]{where} stopped answering while {doing}: {why}. Half-done: "
            f"node [{name}] may hold some of this step's files or processes; every service "
            "that came up healthy is recorded in the state file, nothing else"
            f" — fix: bring node [{name}] back (is it up, does its sshd answer `{login}`?); "
            "the next `corral up` redoes this step on it and keeps what is recorded")

    def remote(self, name: str, doing: str, coro: Coroutine[Any, Any, T],
               timeout: float = CALL_TIMEOUT_S) -> T:
        """`coro` on the loop; a lost connection is a ProviderError naming node and step."""
        try:
            return self.run(coro, timeout)
        except SshFailure as exc:
            raise ProviderError(f"node [{name}]: {exc.message} — fix: {exc.fix}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            link = self._links.get(name)
            if link is not None and not link.conn.is_closed():  # it answers: a plain failure
                raise ProviderError(
                    f"node [{name}]: {doing} failed: {why} — fix: check the free space (df -h "
                    f"{' '.join(checks.INSTALL_DIRS)}) and the rights there, then run "
                    "`corral up` again: it redoes this step") from None
            raise self.lost(name, doing, why) from None

    def close(self) -> None:
        """Close every connection and stop the loop."""
        if self._loop is None:
            return

        async def close_all() -> None:
            for link in self._links.values():
                link.sftp.exit()
                link.conn.close()
            if self._bastion is not None:
                self._bastion.close()
            for conn in [*(link.conn for link in self._links.values()), self._bastion]:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(5):
                            await conn.wait_closed()

        with contextlib.suppress(Exception):
            self._loop.run(close_all(), 10)
        self._loop.stop()
        self._loop = None
        self._links.clear()
        self._bastion = None
