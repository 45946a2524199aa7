"""Opening an SSH connection to a node (asyncssh), with OpenSSH's host key checking, and every
failure as a message that names the host and the fix.

Host keys are checked against known_hosts (`ssh_known_hosts_path`, default
~/.ssh/known_hosts, OpenSSH's format and host patterns). `ssh_strict_host_key_checking`:
`true` (default) refuses a host whose key is not there; `accept-new` adds the key of a host
that has none yet (OpenSSH's StrictHostKeyChecking=accept-new) and still refuses a changed
one; `false` checks nothing. Authentication: the host's key file and, with `ssh_agent_auth`,
the keys of the agent at $SSH_AUTH_SOCK. A bastion host's connection carries the others
(RKE's `bastion_host`). No OpenSSH client configuration is read.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from corral.install.desired import DEFAULT_KNOWN_HOSTS, HostKeyChecking

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 15.0
AGENT_ENV = "SSH_AUTH_SOCK"


class SshFailure(Exception):
    """A node cannot be reached or logged in to: what happened, and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


@dataclass(frozen=True, slots=True)
class SshTarget:
    """One host to log in to: a node or the bastion."""

    label: str  # how messages name it: "node [node-1]", "the bastion host"
    host: str
    port: int
    user: str
    key: Path | None
    agent: bool
    where: str = ""  # the cluster file's keys for it: "nodes[0]"

    @property
    def address(self) -> str:
        """host:port as OpenSSH's known_hosts writes it ([host]:port off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True, slots=True)
class HostKeys:
    """Where host keys are checked and how strictly."""

    known_hosts: Path | None
    checking: HostKeyChecking

    @property
    def path(self) -> Path:
        """The known_hosts file."""
        return self.known_hosts or Path(DEFAULT_KNOWN_HOSTS).expanduser()


def _keys_fix(target: SshTarget) -> str:
    key = f"{target.key}.pub" if target.key else "<your key>.pub"
    return (f"add the public key to ~{target.user}/.ssh/authorized_keys on the host "
            f"(ssh-copy-id -i {key} -p {target.port} {target.user}@{target.host}), or give "
            f"`{target.where or 'the host'}` the `user` and `ssh_key_path` that log in")


def _known(keys: HostKeys, target: SshTarget) -> list[asyncssh.SSHKey]:
    try:
        known = asyncssh.read_known_hosts(str(keys.path))
    except (OSError, ValueError):
        return []
    addr = target.host
    return list(known.match(target.host, addr, target.port)[0])


async def _offered(target: SshTarget, tunnel: asyncssh.SSHClientConnection | None) -> str:
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(
            target.host, target.port, config=[], tunnel=_via(tunnel)), CONNECT_TIMEOUT_S)
    except (OSError, asyncssh.Error, TimeoutError):
        return ""
    return key.get_fingerprint() if key is not None else ""


async def _host_key_failure(
    keys: HostKeys, target: SshTarget, tunnel: asyncssh.SSHClientConnection | None
) -> SshFailure:
    offered = await _offered(target, tunnel)
    known = _known(keys, target)
    shown = f" (it offers {offered})" if offered else ""
    if known:
        fingerprints = ", ".join(k.get_fingerprint() for k in known)
        return SshFailure(
            f"the host key of {target.label} at {target.address} has CHANGED{shown}: "
            f"{keys.path} has {fingerprints} for it. Someone may be intercepting the "
            "connection, or the host was reinstalled",
            f"check the new key on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub);"
            f" if it is right, remove the old one (ssh-keygen -R '{target.address}' -f "
            f"{keys.path}) and add the new one",
        )
    return SshFailure(
        f"the host key of {target.label} at {target.address} is not in {keys.path}{shown}",
        f"check the key on the host and add it (ssh-keyscan -p {target.port} {target.host} "
        f">> {keys.path}), or set `ssh_strict_host_key_checking: accept-new` to trust "
        "hosts seen for the first time",
    )


async def _accept_new(
    keys: HostKeys, target: SshTarget, tunnel: asyncssh.SSHClientConnection | None
) -> None:
    """accept-new: a host known_hosts has no key for gets the key it offers now."""
    if _known(keys, target):
        return
    try:
        key = await asyncssh.get_server_host_key(target.host, target.port, config=[],
                                                 tunnel=_via(tunnel))
    except (OSError, asyncssh.Error):
        return  # the connection attempt reports it
    if key is None:
        return
    algorithm, blob = key.export_public_key().decode().split()[:2]
    line = f"{target.address} {algorithm} {blob}\n"
    keys.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with keys.path.open("a") as file:
        file.write(line)


def _via(tunnel: asyncssh.SSHClientConnection | None) -> asyncssh.SSHClientConnection | tuple[()]:
    """asyncssh's `tunnel`: a connection, or () for none."""
    return tunnel if tunnel is not None else ()


def _client_keys(target: SshTarget) -> list[asyncssh.SSHKey]:
    if target.key is None:
        return []
    try:
        return [asyncssh.read_private_key(str(target.key))]
    except asyncssh.KeyImportError as exc:
        encrypted = "passphrase" in str(exc).lower()
        raise SshFailure(
            f"cannot use the SSH key {target.key} for {target.label}: {exc}",
            "load it into an SSH agent (ssh-add) and set `ssh_agent_auth: true`" if encrypted
            else "give `ssh_key_path` an OpenSSH private key",
        ) from None
    except OSError as exc:
        raise SshFailure(f"cannot read the SSH key {target.key}: {exc.strerror}",
                         "give `ssh_key_path` a readable private key file") from None


def _agent(target: SshTarget) -> str | None:
    if not target.agent:
        return None
    path = os.environ.get(AGENT_ENV)
    if not path:
        raise SshFailure(
            f"ssh_agent_auth is on for {target.label}, but {AGENT_ENV} is not set",
            "start an agent and add the key (eval $(ssh-agent); ssh-add <key>) in the shell "
            "that runs corral, or set `ssh_agent_auth: false` and give `ssh_key_path`",
        )
    return path


async def connect(
    target: SshTarget, keys: HostKeys, tunnel: asyncssh.SSHClientConnection | None = None
) -> asyncssh.SSHClientConnection:
    """A logged-in connection to `target` (through `tunnel` when given); SshFailure names
    what went wrong and the fix."""
    client_keys = _client_keys(target)
    agent = _agent(target)
    if keys.checking == "accept-new":
        await _accept_new(keys, target, tunnel)
    known: str | None = None if keys.checking == "off" else str(keys.path)
    if known is not None and not keys.path.is_file():
        raise SshFailure(
            f"{keys.path} does not exist, so no host key of {target.label} can be checked",
            f"create it with the hosts' keys (ssh-keyscan -p {target.port} {target.host} >> "
            f"{keys.path}), set `ssh_known_hosts_path`, or "
            "`ssh_strict_host_key_checking: accept-new`",
        )
    try:
        return await asyncio.wait_for(asyncssh.connect(
            target.host, target.port, username=target.user, client_keys=client_keys,
            agent_path=agent, known_hosts=known, config=[], keepalive_interval=KEEPALIVE_S,
            connect_timeout=CONNECT_TIMEOUT_S, tunnel=_via(tunnel),
        ), CONNECT_TIMEOUT_S * 1.5)
    except asyncssh.HostKeyNotVerifiable:
        raise await _host_key_failure(keys, target, tunnel) from None
    except asyncssh.PermissionDenied:
        tried = [str(target.key)] if target.key else []
        tried += ["the SSH agent's keys"] if agent else []
        raise SshFailure(
            f"{target.label} at {target.host}:{target.port} refused the login as "
            f"{target.user} (tried {' and '.join(tried) or 'no key'})", _keys_fix(target),
        ) from None
    except (TimeoutError, asyncssh.ConnectionLost) as exc:
        what = "no answer" if isinstance(exc, TimeoutError) else "the connection was lost"
        raise SshFailure(
            f"cannot reach {target.label} at {target.host}:{target.port}: {what} within "
            f"{CONNECT_TIMEOUT_S:g}s",
            f"check the address and port (`{target.where or 'address'}`), that the host is up, "
            "and that no firewall drops SSH",
        ) from None
    except socket.gaierror as exc:
        raise SshFailure(f"cannot resolve {target.host} ({target.label}): {exc.strerror}",
                         f"give `{target.where or 'address'}` an IP address or a name that "
                         "resolves here") from None
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (
            exc.strerror or str(exc))
        raise SshFailure(
            f"cannot reach {target.label} at {target.host}:{target.port}: {reason}",
            f"check that sshd runs on the host and listens on port {target.port} (`port` of "
            f"{target.where or 'the host'}), and that the address is right",
        ) from None
    except asyncssh.Error as exc:
        raise SshFailure(f"SSH to {target.label} at {target.host}:{target.port} failed: "
                         f"{exc.reason}", "check the host's sshd log") from None
