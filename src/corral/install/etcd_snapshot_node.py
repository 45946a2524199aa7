"""What the snapshot commands do on one etcd node: run `etcdctl`, and read, write, list and
check the files of its snapshot directory.

A `NodeShell` is one node as the provider reaches it: with the local provider the node is a
directory of this machine; over SSH, commands run on the node through the provider's
connection. Its snapshots are in `/opt/corral/etcd-snapshots/` as the node sees it
(`node_snapshot_dir`): there on an SSH node, under the node's `rootfs/` (where the local
provider puts a node's absolute paths) on a local one. `etcdctl` is the one beside the node's
etcd binary (Debian's `/usr/bin/etcdctl`, or the release's `bin/etcdctl`), talking to the
node's own member with the etcd client certificate every node has.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from corral.install.desired import NodeSpec
from corral.install.etcd_snapshot_files import (
    CHECKSUM_SUFFIX,
    PARTIAL_SUFFIX,
    checksum_line,
    node_snapshot_dir,
    parse_checksum,
    snapshot_names,
)
from corral.install.providers.base import NodePaths, Provider
from corral.install.services import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    etcd_client_url,
    etcd_peer_url,
    member_name,
)

if TYPE_CHECKING:
    from corral.install.providers.ssh import SshProvider

ETCDCTL_TIMEOUT_S = 120.0
PREVIOUS_DATA_SUFFIX = ".before-restore"  # the member's data as it was before the last restore
RESTORING_SUFFIX = ".restoring"


@dataclass(frozen=True, slots=True)
class Copy:
    """One node's copy of a snapshot: does it exist, its checksum file's digest, and the
    sha256 of its bytes ("" when unknown)."""

    exists: bool
    recorded: str | None = None
    actual: str = ""

    @property
    def good(self) -> bool:
        """The file exists and its bytes match its checksum file."""
        return self.exists and self.recorded is not None and self.recorded == self.actual


class NodeShell(abc.ABC):
    """One etcd node's snapshot directory and commands."""

    def __init__(self, provider: Provider, node: NodeSpec, etcdctl: str) -> None:
        self.provider = provider
        self.node = node
        self.paths: NodePaths = provider.node_paths(node.name)
        self.etcdctl = etcdctl

    @property
    def snapshot_dir(self) -> Path:
        """Where the node keeps its snapshots (`/opt/corral/etcd-snapshots` as the node sees
        it: under the node's directory with the local provider)."""
        return node_snapshot_dir(self.paths)

    @abc.abstractmethod
    def run(self, argv: list[str], timeout_s: float = ETCDCTL_TIMEOUT_S) -> tuple[int, str]:
        """Run `argv` on the node (ETCDCTL_API=3): (exit code, output)."""

    @abc.abstractmethod
    def listdir(self) -> list[str]:
        """The file names of the snapshot directory (empty when it does not exist)."""

    @abc.abstractmethod
    def sha256(self, path: Path) -> str:
        """The sha256 of a file of the node ("" when it cannot be read)."""

    @abc.abstractmethod
    def write(self, path: Path, data: bytes) -> None:
        """Write a file of the node atomically (mode 0600), creating its directory."""

    @abc.abstractmethod
    def remove(self, path: Path) -> None:
        """Delete a file of the node (nothing when it is not there)."""

    @abc.abstractmethod
    def swap_data(self, restored: Path) -> None:
        """Make `restored` the member's data directory; the old one becomes
        `<data>.before-restore` (replacing an older one)."""

    def read(self, path: Path) -> bytes | None:
        """A file of the node (None when it does not exist)."""
        return self.provider.read_file(self.paths, path)

    def path(self, name: str) -> Path:
        """The snapshot file `name` on the node."""
        return self.snapshot_dir / name

    def names(self) -> list[str]:
        """The snapshots the node has (each with its checksum file)."""
        return snapshot_names(self.listdir())

    def etcdctl_tls(self) -> list[str]:
        """The flags that reach the node's own member with the etcd client certificate."""
        return [
            f"--endpoints={etcd_client_url(self.node)}",
            f"--cacert={self.paths.file(CA_FILE)}",
            f"--cert={self.paths.file(CLIENT_CERT)}",
            f"--key={self.paths.file(CLIENT_KEY)}",
        ]

    def save(self, name: str) -> str:
        """`etcdctl snapshot save` from the node's member into `<name>.part`, renamed to
        `<name>` once complete, then its checksum file; the snapshot's sha256."""
        final = self.path(name)
        partial = self.path(name + PARTIAL_SUFFIX)
        self.run(["mkdir", "-p", "-m", "0700", str(self.snapshot_dir)])
        code, out = self.run([self.etcdctl, *self.etcdctl_tls(), "snapshot", "save",
                              str(partial)])
        if code != 0:
            self.remove(partial)
            raise SnapshotNodeError(self.node.name, f"etcdctl snapshot save failed: "
                                    f"{_last_line(out)}")
        digest = self.sha256(partial)
        if not digest:
            raise SnapshotNodeError(self.node.name, f"cannot read {partial}")
        self.write(self.path(name + CHECKSUM_SUFFIX), checksum_line(name, digest))
        code, out = self.run(["mv", "-f", str(partial), str(final)])  # whole, with its checksum
        if code != 0:
            self.remove(self.path(name + CHECKSUM_SUFFIX))
            raise SnapshotNodeError(self.node.name, f"cannot keep {final}: {_last_line(out)}")
        return digest

    def put(self, name: str, data: bytes, digest: str) -> None:
        """Store snapshot bytes (copied from another node) as `<name>` with its checksum."""
        self.write(self.path(name), data)
        self.write(self.path(name + CHECKSUM_SUFFIX), checksum_line(name, digest))

    def copy_of(self, name: str) -> Copy:
        """The node's copy of snapshot `name`, checked against its checksum file."""
        recorded_text = self.read(self.path(name + CHECKSUM_SUFFIX))
        actual = self.sha256(self.path(name))
        if not actual and recorded_text is None:
            return Copy(False)
        recorded = parse_checksum(recorded_text) if recorded_text is not None else None
        return Copy(bool(actual), recorded, actual)

    def restore(self, snapshot: Path, initial_cluster: str, token: str) -> None:
        """`etcdctl snapshot restore` of `snapshot` as this node's member of a new cluster
        (its name, peer URL, the initial cluster of every member, `token`), into a new data
        directory that then replaces the member's."""
        target = Path(f"{self.paths.etcd_data}{RESTORING_SUFFIX}")
        self.run(["rm", "-rf", str(target)])
        code, out = self.run([
            self.etcdctl, "snapshot", "restore", str(snapshot),
            f"--name={member_name(self.node.name)}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-token={token}",
            f"--initial-advertise-peer-urls={etcd_peer_url(self.node)}",
            f"--data-dir={target}",
        ])
        if code != 0:
            self.run(["rm", "-rf", str(target)])
            raise SnapshotNodeError(self.node.name, f"etcdctl snapshot restore failed: "
                                    f"{_last_line(out)}")
        self.swap_data(target)


class SnapshotNodeError(Exception):
    """Something failed on one node; the message says what."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"node [{node}]: {message}")
        self.node, self.message = node, message


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


class LocalShell(NodeShell):
    """A node of the local provider: a directory of this machine."""

    def run(self, argv: list[str], timeout_s: float = ETCDCTL_TIMEOUT_S) -> tuple[int, str]:
        """A process of this machine."""
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  env={**os.environ, "ETCDCTL_API": "3"}, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 1, str(exc)
        return done.returncode, done.stdout + done.stderr

    def listdir(self) -> list[str]:
        """The directory's entries."""
        try:
            return os.listdir(self.snapshot_dir)
        except OSError:
            return []

    def sha256(self, path: Path) -> str:
        """Hashed here, in chunks."""
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return ""
        return digest.hexdigest()

    def write(self, path: Path, data: bytes) -> None:
        """Temporary file, fsync, rename."""
        from corral.install.state import write_private

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, data)

    def remove(self, path: Path) -> None:
        """unlink."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def swap_data(self, restored: Path) -> None:
        """Two renames."""
        data = self.paths.etcd_data
        previous = Path(f"{data}{PREVIOUS_DATA_SUFFIX}")
        shutil.rmtree(previous, ignore_errors=True)
        if data.exists():
            data.rename(previous)
        restored.rename(data)


class SshShell(NodeShell):
    """A node reached over SSH, through the provider's connection."""

    def _exec(self, command: str, timeout_s: float) -> tuple[int, str]:
        try:
            return self._ssh().run_command(self.node.name, command, timeout_s)
        except Exception as exc:  # SSH and provider failures of this node, reported as such
            raise SnapshotNodeError(self.node.name, f"over SSH: {exc}") from None

    def _ssh(self) -> SshProvider:
        return cast("SshProvider", self.provider)  # shell_for chose this class by its name

    def run(self, argv: list[str], timeout_s: float = ETCDCTL_TIMEOUT_S) -> tuple[int, str]:
        """`argv` through the node's shell."""
        return self._exec(f"ETCDCTL_API=3 {shlex.join(argv)}", timeout_s)

    def listdir(self) -> list[str]:
        """`ls -A` of the directory."""
        code, out = self.run(["ls", "-A", str(self.snapshot_dir)], 30.0)
        return out.split() if code == 0 else []

    def sha256(self, path: Path) -> str:
        """`sha256sum` on the node."""
        code, out = self.run(["sha256sum", str(path)], ETCDCTL_TIMEOUT_S)
        words = out.split()
        return words[0] if code == 0 and words and len(words[0]) == 64 else ""

    def write(self, path: Path, data: bytes) -> None:
        """Over SFTP, through the provider (temporary file, fsync, rename)."""
        try:
            self._ssh().write_file(self.node.name, str(path), data, 0o600, ETCDCTL_TIMEOUT_S)
        except Exception as exc:  # SSH and SFTP failures of this node, reported as such
            raise SnapshotNodeError(self.node.name, f"cannot write {path} over SFTP: "
                                    f"{exc}") from None

    def remove(self, path: Path) -> None:
        """`rm -f`."""
        self.run(["rm", "-f", str(path)], 30.0)

    def swap_data(self, restored: Path) -> None:
        """`rm -rf` of the older copy and two `mv`s."""
        data = str(self.paths.etcd_data)
        previous = f"{data}{PREVIOUS_DATA_SUFFIX}"
        script = (f"rm -rf {shlex.quote(previous)} && "
                  f"{{ [ ! -e {shlex.quote(data)} ] || mv {shlex.quote(data)} "
                  f"{shlex.quote(previous)}; }} && mv {shlex.quote(str(restored))} "
                  f"{shlex.quote(data)}")
        code, out = self._exec(script, 60.0)
        if code != 0:
            raise SnapshotNodeError(self.node.name, f"cannot put the restored data in place: "
                                    f"{_last_line(out)}")


def shell_for(provider: Provider, node: NodeSpec, etcd_binary: str) -> NodeShell:
    """The node as the provider reaches it; etcdctl beside the node's etcd."""
    etcdctl = str(Path(etcd_binary).with_name("etcdctl"))
    if provider.name == "ssh":
        return SshShell(provider, node, etcdctl)
    return LocalShell(provider, node, shutil.which("etcdctl") or etcdctl)
