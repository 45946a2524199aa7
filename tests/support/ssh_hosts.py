"""Real SSH hosts on this machine for the SSH provider's tests.

Each host is Debian's OpenSSH `sshd -D -e` in a mount namespace of its own (`unshare --mount
--propagation private`) with private tmpfs mounts on the directories Corral uses at fixed paths
(/opt/corral, /etc/corral, /var/lib/corral, /var/log/corral, and /var/log/auditlog, the servers'
default audit log), listening on its own loopback address (127.0.9.N) and a free port. So every
host has its own filesystem where it matters, and the same network as this machine. The empty
mount points are created on this machine's filesystem once; nothing is written into them here.

Each host has its own host key, its own HOME (a fresh one, as on a new machine: no shell
profile) and PATH (Debian's default, or with a directory of the test's in front), and trusts
the public keys it is given. Processes started over SSH stay in the host's namespace: `stop()`
kills every process there (the services Corral started included), then sshd, and waits until
none is left.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, wait_port, wait_until
from tests.support.procs import ManagedProcess

SSHD = "/usr/sbin/sshd"
MOUNTS = ("/opt/corral", "/etc/corral", "/var/lib/corral", "/var/log/corral",
          "/var/log/auditlog")
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
THIRD_OCTET = 9  # 127.0.9.N: no other test binds there
STOP_TIMEOUT_S = 15.0


def sshd_available() -> bool:
    """sshd, ssh-keygen and unshare exist and we are root (mount namespaces need it)."""
    return (Path(SSHD).exists() and os.geteuid() == 0
            and all(Path(p).exists() for p in ("/usr/bin/ssh-keygen", "/usr/bin/unshare",
                                                 "/usr/bin/nsenter")))


def make_key(path: Path) -> Path:
    """A new ed25519 key pair at `path` (and `path`.pub), without a passphrase."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "corral-test", "-f",
                    str(path)], check=True, capture_output=True)
    return path


def public_key(path: Path) -> str:
    """`ssh-ed25519 AAAA…` of the key pair at `path`."""
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


_HANDED_OUT: set[str] = set()  # addresses this test process already gave to a block


def address_block(count: int) -> list[str]:
    """`count` consecutive addresses 127.0.9.N, from a random start (tests running side by
    side rarely meet), never one this process handed out before (two blocks of one test
    session never share an address)."""
    starts = [start for start in range(1, 250 - count)
              if not any(f"127.0.{THIRD_OCTET}.{start + i}" in _HANDED_OUT
                         for i in range(count))]
    if not starts:
        raise RuntimeError(f"no {count} free consecutive addresses left in 127.0.{THIRD_OCTET}.x")
    start = random.choice(starts)
    block = [f"127.0.{THIRD_OCTET}.{start + i}" for i in range(count)]
    _HANDED_OUT.update(block)
    return block


def _namespace_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@dataclass
class SshHost:
    """One test host: sshd on `address`:`port` in its own mount namespace."""

    directory: Path
    address: str
    authorized: Sequence[Path]  # key pairs whose public keys may log in (as root)
    path_prefix: Path | None = None  # a directory put in front of the host's PATH
    sizes: dict[str, str] = field(default_factory=dict)  # mount → tmpfs size (e.g. 50m)
    read_only: frozenset[str] = frozenset()  # mounts made read-only (not even root writes)
    log_level: str = "VERBOSE"
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    namespace: str = ""

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def known_hosts_line(self) -> str:
        """This host's line for an OpenSSH known_hosts file."""
        return f"[{self.address}]:{self.port} {public_key(self.host_key)}"

    def _write_config(self) -> None:
        home = self.directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        (self.directory / "authorized_keys").write_text(
            "".join(public_key(k) + "\n" for k in self.authorized))
        path = f"{self.path_prefix}:{DEBIAN_PATH}" if self.path_prefix else DEBIAN_PATH
        self.config.write_text(
            f"ListenAddress {self.address}:{self.port}\nHostKey {self.host_key}\n"
            f"PidFile none\nAuthorizedKeysFile {self.directory / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "Subsystem sftp internal-sftp\nMaxSessions 64\nAllowTcpForwarding yes\n"
            f"LogLevel {self.log_level}\nSetEnv HOME={home} PATH={path}\n"
        )

    def start(self) -> SshHost:
        """Generate the host key, start sshd in its namespace, wait until it listens."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            make_key(self.host_key)
        self._write_config()
        mounts = " && ".join(
            f"mkdir -p {m} && mount -t tmpfs -o mode=0755"
            f"{',size=' + self.sizes[m] if m in self.sizes else ''}"
            f"{',ro' if m in self.read_only else ''} corral-test {m}"
            for m in MOUNTS)
        script = f"{mounts} && mkdir -p /run/sshd && exec {SSHD} -D -e -f {self.config}"
        self.process = ManagedProcess(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
            name=f"sshd-{self.address}")
        wait_port(self.port, self.address, timeout=15)
        self.namespace = _namespace_of(self.process.pid)
        assert self.namespace and self.namespace != _namespace_of(os.getpid()), self.namespace
        return self

    def log(self) -> str:
        """What sshd printed (-e: its log on stderr)."""
        return self.process.output() if self.process else ""

    def processes(self) -> list[int]:
        """Live processes in this host's namespace other than sshd's listener."""
        if not self.namespace:
            return []
        own = self.process.pid if self.process else -1
        found = []
        for name in os.listdir("/proc"):
            pid = int(name) if name.isdigit() else own
            if pid != own and _namespace_of(pid) == self.namespace and _alive(pid):
                found.append(pid)
        return found

    def run(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`sh -c command` inside the host's namespace (to look at its files)."""
        assert self.process is not None
        return subprocess.run(["nsenter", "-t", str(self.process.pid), "-m", "--", "sh", "-c",
                               command], capture_output=True, text=True, timeout=timeout,
                              check=False)

    def read(self, path: str) -> str | None:
        """A file of the host (None when it does not exist)."""
        done = self.run(f"cat {path}")
        return done.stdout if done.returncode == 0 else None

    def kill_all(self) -> list[int]:
        """SIGKILL every process in the namespace but sshd's listener; wait until gone."""
        killed = self.processes()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.processes(), timeout=STOP_TIMEOUT_S,
                   what=f"processes of {self.address} to end")
        return killed

    def stop(self) -> list[int]:
        """Kill what runs in the namespace, then sshd; returns the pids that were left."""
        left = self.kill_all() if self.process else []
        if self.process is not None:
            self.process.stop()
        return left


@contextlib.contextmanager
def ssh_hosts(directory: Path, count: int, authorized: Sequence[Path],
              **options: object) -> Iterator[list[SshHost]]:
    """`count` started hosts on consecutive 127.0.9.N addresses; all stopped afterwards."""
    hosts = [SshHost(directory / f"host-{i + 1}", address, authorized, **options)  # type: ignore[arg-type]
             for i, address in enumerate(address_block(count))]
    try:
        for host in hosts:
            host.start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()


def write_known_hosts(path: Path, hosts: Sequence[SshHost]) -> Path:
    """An OpenSSH known_hosts file with the hosts' keys."""
    path.write_text("".join(h.known_hosts_line + "\n" for h in hosts))
    return path
