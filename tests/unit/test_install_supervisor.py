"""The node supervisor's pure parts: back-off, its spec file, the heartbeat record."""

from __future__ import annotations

import asyncio

import pytest

from corral.install.heartbeat import Heartbeat, node_record
from corral.install.services import HealthProbe
from corral.install.supervisor import BACKOFF_INITIAL_S, BACKOFF_MAX_S, next_backoff
from corral.install.supervisor_spec import HeartbeatSpec, ServiceEntry, SupervisorSpec
from corral.server.domain.nodes import list_nodes
from corral.store.base import Store
from corral.store.memory import MemoryStore

BEAT = HeartbeatSpec("node-1", ("etcd", "worker"), "127.0.77.1", "127.0.77.1",
                     ("https://127.0.77.1:2379",), "/ca", "/c", "/k", "/corral-ha")


@pytest.mark.parametrize(
    ("previous", "ran", "expected"),
    [
        (0.0, 0.0, BACKOFF_INITIAL_S),  # first crash
        (1.0, 0.5, 2.0),  # crashed again quickly: doubles
        (16.0, 1.0, BACKOFF_MAX_S),  # capped
        (BACKOFF_MAX_S, 1.0, BACKOFF_MAX_S),
        (16.0, 3600.0, BACKOFF_INITIAL_S),  # ran long enough: reset
    ],
)
def test_backoff_doubles_up_to_a_cap_and_resets_after_a_long_run(
    previous: float, ran: float, expected: float
) -> None:
    """Restart delays grow like Kubernetes' CrashLoopBackOff and reset after a good run."""
    assert next_backoff(previous, ran) == expected


def test_spec_round_trips_through_its_json() -> None:
    """The spec `corral up` writes is the spec the supervisor reads."""
    entry = ServiceEntry("etcd", ("/usr/bin/etcd", "--name=x"), {"A": "1"},
                         HealthProbe("https", "https://h:2379/health", expect="x", cafile="/ca",
                                     server_name="n"), "d1")
    spec = SupervisorSpec((entry,), BEAT)
    assert SupervisorSpec.from_json(spec.to_json()) == spec
    assert spec.digests == {"etcd": "d1"}


def test_node_record_carries_roles_addresses_and_service_health() -> None:
    """The heartbeat record is the node as kubectl will show it."""
    record = node_record(BEAT, {"etcd": (True, "ok"), "ingress": (False, "refused")},
                         created_at_ms=1, now_ms=2)
    assert (record.name, record.roles, record.heartbeat_at_ms) == ("node-1", ("etcd", "worker"), 2)
    assert record.services["ingress"].healthy is False
    assert not record.ready(now_ms=2)  # a service is down


def test_heartbeat_writes_the_record_and_survives_a_store_failure() -> None:
    """A beat writes the node's record; a failing connection is logged once, not raised."""
    store = MemoryStore()
    said: list[str] = []

    async def good(_: HeartbeatSpec) -> Store:
        return store

    async def bad(_: HeartbeatSpec) -> Store:
        raise OSError("etcd down")

    async def run() -> None:
        failing = Heartbeat(BEAT, said.append, bad)
        assert not await failing.beat({"etcd": (True, "ok")})
        assert not await failing.beat({"etcd": (True, "ok")})
        beat = Heartbeat(BEAT, said.append, good)
        assert await beat.beat({"etcd": (True, "ok")})
        nodes, _ = await list_nodes(store)
        assert [n.name for n in nodes] == ["node-1"] and nodes[0].ready()

    asyncio.run(run())
    assert len(said) == 1 and "etcd down" in said[0]

