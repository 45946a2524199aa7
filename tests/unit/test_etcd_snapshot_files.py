"""Snapshot names, checksum files, the retention and the policy of `services.etcd`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.install.desired import SnapshotSpec
from corral.install.etcd_snapshot_files import (
    SnapshotNameError,
    check_name,
    checksum_line,
    checksum_of,
    expired,
    manual_name,
    node_snapshot_dir,
    parse_checksum,
    policy,
    recurring_name,
    recurring_time,
    snapshot_names,
)
from corral.install.providers.base import NodePaths

NOW = datetime(2026, 12, 1, 23, 30, 0, tzinfo=UTC)


def test_default_names_are_rke_style_timestamps() -> None:
    """A hand-taken snapshot is corral_etcd_snapshot_<RFC 3339>; a recurring one <time>_etcd."""
    assert manual_name(NOW) == "corral_etcd_snapshot_2026-12-01T23:30:00Z"
    assert recurring_name(NOW) == "2026-12-01T23:30:00Z_etcd"
    assert recurring_time("2026-12-01T23:30:00Z_etcd") == NOW
    assert recurring_time("before-upgrade") is None


def test_a_second_recurring_snapshot_in_the_same_second_gets_its_own_name() -> None:
    """Two snapshots within one second do not overwrite each other, and both are dated."""
    first = recurring_name(NOW)
    second = recurring_name(NOW, [first])
    assert second == "2026-12-01T23:30:00Z-2_etcd"
    assert recurring_time(second) == NOW


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x.sha256", "x.part", "a b"])
def test_names_that_are_not_plain_file_names_are_refused(bad: str) -> None:
    """Slashes, leading dots, spaces and the checksum/partial suffixes cannot name a snapshot."""
    with pytest.raises(SnapshotNameError, match="--name"):
        check_name(bad)


def test_checksum_files_are_in_sha256sum_format() -> None:
    """`<hex>  <name>`, and parsing gives the hex back; garbage gives None."""
    digest = checksum_of(b"snapshot bytes")
    line = checksum_line("s1", digest)
    assert line == f"{digest}  s1\n".encode()
    assert parse_checksum(line) == digest
    assert parse_checksum(b"not a checksum") is None


def test_a_listing_shows_only_snapshots_with_their_checksum_file() -> None:
    """Partial files, checksum files, staged copies and files without a checksum are left out."""
    files = ["a", "a.sha256", "b", "c.part", ".restore-a", "d.sha256"]
    assert snapshot_names(files) == ["a"]


def test_retention_removes_only_old_recurring_snapshots_and_keeps_the_newest() -> None:
    """Manual snapshots stay; recurring ones older than the retention go, the newest stays."""
    old = recurring_name(NOW - timedelta(hours=30))
    mid = recurring_name(NOW - timedelta(hours=10))
    new = recurring_name(NOW - timedelta(hours=1))
    names = [old, mid, new, "before-upgrade", manual_name(NOW - timedelta(days=9))]
    assert expired(names, NOW, 24 * 3600) == [old]
    assert expired(names, NOW, 60) == [old, mid]  # the newest is never removed


def test_policy_turns_rke_hours_and_counts_into_seconds() -> None:
    """interval_hours 6 and retention 4 → every 6 h, kept 24 h."""
    found = policy(SnapshotSpec(enabled=True, interval_hours=6, retention=4))
    assert (found.enabled, found.interval_s, found.retention_s) == (True, 21600.0, 86400.0)


def test_the_snapshot_directory_is_opt_corral_as_the_node_sees_it() -> None:
    """An SSH node's /opt/corral/etcd-snapshots; a local node's under its rootfs/."""
    local = NodePaths(Path("/base/nodes/node-1"))
    remote = NodePaths(Path("/var/lib/corral"), node="node-1", rootfs_root=Path("/"))
    assert node_snapshot_dir(local) == Path("/base/nodes/node-1/rootfs/opt/corral/etcd-snapshots")
    assert node_snapshot_dir(remote) == Path("/opt/corral/etcd-snapshots")
