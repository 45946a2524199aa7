"""The etcd test fixture itself: a real cluster that survives a member's kill -9 and restart."""

from __future__ import annotations

from tests.support.etcd_cluster import EtcdCluster


def test_cluster_members_are_healthy_over_mutual_tls(etcd_cluster: EtcdCluster) -> None:
    """Every member answers /health over TLS with the client certificate."""
    assert len(etcd_cluster.endpoints) == 3
    assert len({m.host for m in etcd_cluster.members}) == 3
    assert all(etcd_cluster.member_health(i) for i in range(3))


def test_killed_member_is_down_and_restarts_on_its_data(fresh_etcd_cluster: EtcdCluster) -> None:
    """kill -9 takes one member down (the other two stay or get healthy); restart brings it
    back on its data directory."""
    cluster = fresh_etcd_cluster
    cluster.kill(1)
    assert not cluster.members[1].alive()
    assert not cluster.member_health(1)
    cluster.wait_healthy(0, timeout=10)  # the two left elect a leader if it was the one
    cluster.wait_healthy(2, timeout=10)
    cluster.restart(1)
    assert cluster.member_health(1)
    assert (cluster.members[1].data_dir / "member").is_dir()
