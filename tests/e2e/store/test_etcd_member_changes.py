"""etcd as `corral up` sees and changes it, against a real three-member cluster: membership
changes (`etcdctl member add/remove` through corral.install.etcd_members) just after a member
restarted — etcd refuses reconfigurations then ("unhealthy cluster") until the member asked has
been connected to every peer for five seconds, and the change goes through once it has — and
the members' health probes while they elect a new leader (corral.install.probes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from corral.install.etcd_members import EtcdClient, is_transient_refusal
from corral.install.probes import settled_checks
from corral.install.services import HealthProbe
from corral.store.etcd import connect_etcd
from tests.support.etcd_cluster import (
    EtcdCluster,
    etcd_available,
    free_port_on,
    running_etcd_cluster,
)

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


def _leader(cluster: EtcdCluster) -> int:
    """The index of the member that leads now (the store's status names it)."""

    async def main() -> int:
        store = await connect_etcd(cluster.options(prefix="/leader"))
        try:
            members = (await store.status()).members
        finally:
            await store.close()
        return cluster.index_of(next(m.endpoint for m in members if m.detail == "leader"))

    return asyncio.run(main())


def _probe(cluster: EtcdCluster, index: int) -> HealthProbe:
    """The health probe `corral up` runs for an etcd member."""
    return HealthProbe("https", f"{cluster.members[index].client_url}/health",
                       expect='"health":"true"', cafile=str(cluster.ca_file),
                       certfile=str(cluster.client_cert), keyfile=str(cluster.client_key))


def test_members_electing_a_new_leader_are_not_reported_down(tmp_path: Path) -> None:
    """The leader killed: the two members left answer unhealthy until they elect a new one;
    asked again for a moment (as for a running node), both count as healthy; the dead member
    counts as down, at once when its node is not running, after the moment when it is."""
    with running_etcd_cluster(tmp_path, size=3) as cluster:
        leader = _leader(cluster)
        others = [i for i in range(3) if i != leader]
        cluster.kill(leader)
        results = asyncio.run(settled_checks([_probe(cluster, i) for i in others], again=True))
        assert results == [(True, "ok"), (True, "ok")], results
        began = time.monotonic()
        [(ok, _)] = asyncio.run(settled_checks([_probe(cluster, leader)], again=False))
        assert not ok and time.monotonic() - began < 2.5
        began = time.monotonic()
        [(ok, _)] = asyncio.run(settled_checks([_probe(cluster, leader)], again=True,
                                               settle_s=1.5))
        assert not ok and time.monotonic() - began >= 1.5
