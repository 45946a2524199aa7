"""etcd snapshots as files: their names, their checksum files, and which recurring snapshots
the retention removes. Pure (no I/O): the callers read directories and files.

Every etcd node keeps its snapshots in one directory, `/opt/corral/etcd-snapshots/` as the node
sees it (`<node>/rootfs/opt/corral/etcd-snapshots/` with the local provider, which puts a node's
absolute paths under its `rootfs/`): the snapshot `<name>` (etcd's own
snapshot file, as `etcdctl snapshot save` writes it) and beside it `<name>.sha256`, one line in
`sha256sum`'s format (`<hex>  <name>`), so `sha256sum -c` checks it on the node too.

Names follow RKE: a snapshot taken by `corral etcd snapshot-save` without `--name` is
`corral_etcd_snapshot_<UTC time, RFC 3339>` (RKE's `rke_etcd_snapshot_…`); a recurring snapshot
is `<UTC time, RFC 3339>_etcd` (RKE's etcd-rolling-snapshots). Only recurring snapshots are
removed by the retention; snapshots saved by hand stay until deleted by hand.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from corral.install.bundle import PREFIX
from corral.install.desired import SnapshotSpec
from corral.install.providers.base import NodePaths

SNAPSHOT_DIR = "etcd-snapshots"  # under the install prefix (/opt/corral) or the node directory
CHECKSUM_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".part"  # a snapshot being written (renamed once complete)
MANUAL_PREFIX = "corral_etcd_snapshot_"
RECURRING_SUFFIX = "_etcd"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339 in UTC, as RKE names its snapshots
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,200}")
_RECURRING = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)(?:-\d+)?" + RECURRING_SUFFIX)


def node_snapshot_dir(paths: NodePaths) -> Path:
    """A node's snapshot directory: `/opt/corral/etcd-snapshots` where the node's absolute
    paths land (itself over SSH, `<node>/rootfs/opt/corral/etcd-snapshots` locally)."""
    return paths.inside(f"{PREFIX}/{SNAPSHOT_DIR}")


class SnapshotNameError(ValueError):
    """A snapshot name that cannot be a file name in the snapshot directory."""


def check_name(name: str) -> str:
    """`name` when it can name a snapshot (letters, digits, `._:+-`, not starting with a dot,
    not ending in `.sha256` or `.part`); else SnapshotNameError saying what is allowed."""
    if not _NAME.fullmatch(name) or name.endswith((CHECKSUM_SUFFIX, PARTIAL_SUFFIX)):
        raise SnapshotNameError(
            f"--name {name!r} cannot name a snapshot: use letters, digits and . _ : + - "
            f"(starting with a letter or digit, at most 201 characters, not ending in "
            f"{CHECKSUM_SUFFIX} or {PARTIAL_SUFFIX}), e.g. before-upgrade"
        )
    return name


def stamp(when: datetime) -> str:
    """`when` in UTC as snapshot names carry it (`2026-12-01T23:30:00Z`)."""
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def manual_name(when: datetime) -> str:
    """The name of a snapshot saved by hand without `--name` (RKE's manner)."""
    return f"{MANUAL_PREFIX}{stamp(when)}"


def recurring_name(when: datetime, taken: Iterable[str] = ()) -> str:
    """The name of a recurring snapshot taken at `when`, not one of `taken` (a second snapshot
    within the same second gets `-2`, `-3`, …)."""
    base = stamp(when)
    existing = set(taken)
    name, count = f"{base}{RECURRING_SUFFIX}", 1
    while name in existing:
        count += 1
        name = f"{base}-{count}{RECURRING_SUFFIX}"
    return name


def recurring_time(name: str) -> datetime | None:
    """When a recurring snapshot was taken, from its name; None for any other name."""
    match = _RECURRING.fullmatch(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=UTC)


def checksum_of(data: bytes) -> str:
    """The sha256 of a snapshot's bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def checksum_line(name: str, digest: str) -> bytes:
    """The content of `<name>.sha256` (`sha256sum`'s format)."""
    return f"{digest}  {name}\n".encode()


def parse_checksum(text: bytes) -> str | None:
    """The hex digest a checksum file holds, None when it holds none."""
    words = text.decode("ascii", "replace").split()
    if not words or not re.fullmatch(r"[0-9a-f]{64}", words[0]):
        return None
    return words[0]


def snapshot_names(files: Iterable[str]) -> list[str]:
    """The snapshots of a directory listing (each name that has its checksum file), sorted."""
    present = set(files)
    return sorted(
        name for name in present
        if not name.endswith((CHECKSUM_SUFFIX, PARTIAL_SUFFIX)) and not name.startswith(".")
        and f"{name}{CHECKSUM_SUFFIX}" in present
    )


def expired(names: Iterable[str], now: datetime, retention_s: float) -> list[str]:
    """The recurring snapshots among `names` older than `retention_s` at `now`; the newest
    recurring snapshot is always kept, so a cluster never has none."""
    dated = sorted(((recurring_time(n), n) for n in names), key=lambda item: str(item[0]))
    recurring = [(when, name) for when, name in dated if when is not None]
    cutoff = now - timedelta(seconds=retention_s)
    return [name for when, name in recurring[:-1] if when < cutoff]


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """How often the cluster snapshots itself and how long the snapshots stay."""

    enabled: bool
    interval_s: float
    retention_s: float


def policy(spec: SnapshotSpec) -> SnapshotPolicy:
    """The policy of `services.etcd`: the interval and the retention in seconds (`interval_s`
    and `retention_s` when the desired state carries them, else RKE's hours and count)."""
    interval = float(getattr(spec, "interval_s", 0.0) or spec.interval_hours * 3600.0)
    retention = float(getattr(spec, "retention_s", 0.0) or spec.retention * interval)
    return SnapshotPolicy(spec.enabled, interval, retention)
