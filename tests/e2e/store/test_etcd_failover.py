"""The etcd store when members die: kill -9 of the member in use under a stream of writes and a
watch, a member that stops answering without closing its connections, and the loss (then return)
of quorum. Each test has a 3-member cluster of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time

import pytest

from corral.store.base import CompareFailed, Event, StoreUnavailable
from corral.store.etcd import EtcdStore, connect_etcd
from tests.support.etcd_cluster import EtcdCluster

#: The longest a writer may go without an acknowledged write once a member of three died. A kill
#: of the leader costs an election (etcd's election timeout is 1 s, randomised, and more on a busy
#: 2-core machine) before a retried write applies; a gap beyond the store's request_timeout (5 s)
#: would mean the store stayed on the dead member instead of moving on.
FAILOVER_GAP = 5.0
#: Pause between one writer's writes (pacing, so the writers leave etcd some CPU).
PACE = 0.005


async def _collect(events: object, into: list[Event]) -> None:
    async for event in events:  # type: ignore[attr-defined]
        into.append(event)


async def _until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("victim", ["in-use", "leader"])
def test_kill_of_a_member_loses_no_write_and_no_event(
    fresh_etcd_cluster: EtcdCluster, victim: str
) -> None:
    """kill -9 of the member the store and its watch use (or of the leader), under creates and
    plain puts: every acknowledged write is stored, the watch sees each revision exactly once
    (resuming elsewhere when its member died), and creates go on within a few seconds."""
    cluster = fresh_etcd_cluster

    async def main() -> None:
        store = await connect_etcd(cluster.options(prefix="/failover"))
        try:
            await scenario(store)
        finally:
            await store.close()

    async def scenario(store: EtcdStore) -> None:
        attached = cluster.index_of(store.endpoint)
        if victim == "leader":
            leader = [m for m in (await store.status()).members if m.detail == "leader"]
            attached = cluster.index_of(leader[0].endpoint)
        start = await store.revision()
        seen: list[Event] = []
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(_collect(store.watch("/"), seen))
        acked: dict[str, int] = {}
        ack_times: list[float] = []
        unsure: list[str] = []
        killed_at: list[float] = []

        async def creator() -> None:
            i = 0
            while not stop.is_set():
                key = f"/c/{i:05d}"
                acked[key] = await store.create(key, b"v%d" % i)
                ack_times.append(time.monotonic())
                i += 1
                await asyncio.sleep(PACE)

        async def putter() -> None:
            i = 0
            while not stop.is_set():
                key = f"/p/{i:05d}"
                try:
                    acked[key] = await store.put(key, b"p%d" % i)
                except StoreUnavailable:
                    unsure.append(key)  # its outcome is unknown; either way is fine
                i += 1
                await asyncio.sleep(PACE)

        writers = [asyncio.ensure_future(creator()), asyncio.ensure_future(putter())]
        await _until(lambda: len(acked) >= 60, 30, "60 writes before the kill")
        cluster.kill(attached)
        killed_at.append(time.monotonic())
        await _until(lambda: len(ack_times) and ack_times[-1] > killed_at[0], 15, "a write after")
        count = len(acked)
        await _until(lambda: len(acked) >= count + 60, 30, "60 writes after the kill")
        stop.set()
        await asyncio.gather(*writers)

        assert store.endpoint != cluster.endpoints[attached]  # never stays on a dead member
        after_kill = [t for t in ack_times if t > killed_at[0]]
        before_kill = [t for t in ack_times if t <= killed_at[0]]
        assert after_kill[0] - max(before_kill[-1], killed_at[0] - 1) < FAILOVER_GAP
        kvs, _ = await store.range("/")
        stored = {kv.key: kv.mod_revision for kv in kvs}
        for key, revision in acked.items():
            assert stored.get(key) == revision, f"acknowledged write {key}@{revision} lost"
        last = max(stored.values())
        await _until(lambda: seen and seen[-1].kv.mod_revision >= last, 15, "the watch to catch up")
        revisions = [e.kv.mod_revision for e in seen]
        assert revisions == sorted(set(revisions)), "an event was repeated or out of order"
        assert revisions == sorted(stored.values()), "the watch missed or invented an event"
        assert revisions[0] > start
        watcher.cancel()

    asyncio.run(main())


def test_quorum_loss_is_unavailable_promptly_and_recovers(fresh_etcd_cluster: EtcdCluster) -> None:
    """With 2 of 3 members killed, writes and reads raise StoreUnavailable naming the store
    within request_timeout and status() is unhealthy; once they are back, writes work again and
    an open watch goes on."""
    cluster = fresh_etcd_cluster
    timeout = 2.0

    async def main() -> None:
        store = await connect_etcd(cluster.options(prefix="/quorum", request_timeout=timeout))
        try:
            events = store.watch("/")
            first = await store.put("/before", b"1")
            assert (await anext(events)).kv.mod_revision == first
            attached = cluster.index_of(store.endpoint)
            others = [i for i in range(3) if i != attached]
            cluster.kill(attached)
            cluster.kill(others[0])
            for attempt in (store.put("/during", b"x"), store.get("/before")):
                began = time.monotonic()
                with pytest.raises(StoreUnavailable) as info:
                    await attempt
                assert time.monotonic() - began < timeout + 1.0
                message = str(info.value)
                assert "etcd (" in message and all(url in message for url in cluster.endpoints)
            with pytest.raises(StoreUnavailable):
                await store.create("/during-create", b"x")
            status = await store.status()
            assert not status.healthy and "no quorum" in status.detail
            assert sum(m.healthy for m in status.members) == 0
            cluster.restart(attached, wait=False)
            cluster.restart(others[0], wait=False)
            revision = await _write_when_back(store)
            got = await asyncio.wait_for(_next_at(events, revision), 15)
            assert got.kv.key == "/after"
            await _status_healthy(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_read_on_a_member_that_stops_answering_is_answered_by_another(
    fresh_etcd_cluster: EtcdCluster,
) -> None:
    """A follower that stops answering without closing its connections (SIGSTOP: what a node
    cut off the network looks like, no reset) holds a read only for one attempt; the read is
    answered by another member well within request_timeout, and later reads go there."""
    cluster = fresh_etcd_cluster
    timeout = 5.0

    async def main() -> None:
        probe = await connect_etcd(cluster.options(prefix="/frozen"))
        try:
            members = (await probe.status()).members
            await probe.put("/k", b"v")
        finally:
            await probe.close()
        follower = next(m.endpoint for m in members if m.detail != "leader")
        order = (follower, *[e for e in cluster.endpoints if e != follower])
        options = dataclasses.replace(
            cluster.options(prefix="/frozen", request_timeout=timeout), endpoints=order
        )
        store = await connect_etcd(options)
        frozen = cluster.members[cluster.index_of(follower)].process
        assert frozen is not None and store.endpoint == follower
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            took = []
            for _ in range(3):
                began = time.monotonic()
                got = await store.get("/k")
                took.append(time.monotonic() - began)
                assert got is not None and got.value == b"v"
            assert store.endpoint != follower
            assert max(took) < timeout * 0.8, took  # one capped attempt, not the whole timeout
            assert sorted(took)[1] < 1.0, took  # once moved, reads do not wait on it again
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
            await store.close()

    asyncio.run(main())


async def _write_when_back(store: EtcdStore) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            return await store.put("/after", b"2")
        except (StoreUnavailable, CompareFailed):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _next_at(events: object, revision: int) -> Event:
    async for event in events:  # type: ignore[attr-defined]
        if event.kv.mod_revision >= revision:
            return event
    raise AssertionError("the watch ended")


async def _status_healthy(store: EtcdStore) -> None:
    """Wait until status() is healthy with every member healthy: a quorum (2 of 3) is enough
    for the cluster to be healthy while the last member restarted still catches up."""
    deadline = time.monotonic() + 15
    while True:
        status = await store.status()
        if status.healthy and len(status.members) == 3 and all(
                m.healthy for m in status.members):
            return
        assert time.monotonic() < deadline, f"status stays unhealthy: {status}"
        await asyncio.sleep(0.1)
