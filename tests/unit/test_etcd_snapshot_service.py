"""The etcd service with recurring snapshots: run by `corral etcd snapshot-loop`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from corral.install.desired import SnapshotSpec
from corral.install.services import node_services
from tests.support.install_cluster import desired
from tests.unit.test_install_services import BASE, context


def test_without_snapshots_the_member_runs_as_before() -> None:
    """No `backup`/`snapshot`: the etcd service is the etcd binary itself (digest unchanged)."""
    cluster = desired()
    etcd = node_services(context(cluster), cluster.nodes[0])[0]
    assert etcd.argv[0] == "/usr/bin/etcd"
    assert "snapshot-loop" not in etcd.argv


def test_with_snapshots_the_loop_runs_the_member_and_snapshots_it() -> None:
    """`backup: true` (6 h, kept 24 h): snapshot-loop with the interval and retention in
    seconds, the node's snapshot directory and client certificate, then the member's own
    command line after `--`."""
    plain = desired()
    cluster = replace(plain, snapshots=SnapshotSpec(enabled=True, interval_hours=6, retention=4))
    before = node_services(context(plain), plain.nodes[0])[0]
    etcd = node_services(context(cluster), cluster.nodes[0])[0]
    argv = list(etcd.argv)
    assert argv[argv.index("etcd") + 1] == "snapshot-loop"
    assert argv[argv.index("--creation") + 1] == "21600s"
    assert argv[argv.index("--retention") + 1] == "86400s"
    node_dir = BASE / "nodes" / cluster.nodes[0].name
    assert Path(argv[argv.index("--snapshot-dir") + 1]) == (
        node_dir / "rootfs" / "opt" / "corral" / "etcd-snapshots")
    assert argv[argv.index("--etcdctl") + 1] == "/usr/bin/etcdctl"
    assert argv[argv.index("--cert") + 1].endswith("pki/etcd-client.pem")
    assert tuple(argv[argv.index("--") + 1:]) == before.argv
    assert etcd.digest != before.digest and etcd.health == before.health
