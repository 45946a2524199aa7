"""etcd membership changes as `corral up` makes them (`etcdctl member add/remove` through
corral.install.etcd_members), against a real three-member cluster just after a member restarted:
etcd refuses reconfigurations then ("unhealthy cluster") until the member asked has been
connected to every peer for five seconds, and the change goes through once it has."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.install.etcd_members import EtcdClient, is_transient_refusal
from tests.support.etcd_cluster import etcd_available, free_port_on, running_etcd_cluster

pytestmark = pytest.mark.skipif(not etcd_available(), reason="etcd is not installed")


def test_a_member_is_added_and_removed_right_after_another_restarted(tmp_path: Path) -> None:
    with running_etcd_cluster(tmp_path, size=3) as cluster:
        client = EtcdClient((cluster.endpoints[0],), str(cluster.ca_file),
                            str(cluster.client_cert), str(cluster.client_key))
        cluster.kill(2)
        cluster.restart(2)
        host = cluster.members[0].host.rsplit(".", 1)[0] + ".9"
        joining = f"https://{host}:{free_port_on(host)}"
        initial = client.add("m9", joining)
        assert f"m9={joining}" in initial
        assert all(f"{m.name}={m.peer_url}" in initial for m in cluster.members)
        assert any(joining in m.peer_urls for m in client.members())
        assert client.remove(joining) is True
        assert not any(joining in m.peer_urls for m in client.members())
        assert client.remove(joining) is False


def test_only_refusals_that_pass_by_themselves_are_asked_again() -> None:
    assert is_transient_refusal("etcdctl member add m9: Error: etcdserver: unhealthy cluster")
    assert is_transient_refusal(
        "etcdserver: re-configuration failed due to not enough started members")
    assert not is_transient_refusal("etcdctl member add m9: Error: etcdserver: Peer URLs "
                                    "already exists")
    assert not is_transient_refusal("etcdctl member remove 1: Error: etcdserver: member not found")
