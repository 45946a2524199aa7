"""The Store contract, run against every backend of tests/support/store_backends.py.

No test assumes an empty store: each takes `base = await store.revision()` first and states
revisions relative to it (a shared cluster's revision is global; its keys are fresh per test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from corral.store.base import (
    Compacted,
    Compare,
    CompareFailed,
    Delete,
    Event,
    LeaseNotFound,
    Op,
    Put,
    Store,
)
from tests.support.store_backends import (
    CONTRACT_BACKENDS,
    DEFAULT_TEST_HISTORY,
    contract,
    nothing_pending,
    open_contract_store,
    ready_now,
    take,
)

UNKNOWN_LEASE = 0x5EED_0000_1234


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return str(request.param)


# -- keys, revisions, compares -------------------------------------------------------------------


@contract()
async def test_each_write_bumps_the_revision_by_one(store: Store) -> None:
    """put/delete return consecutive revisions; KeyValue tracks create/mod/version."""
    base = await store.revision()
    assert await store.put("/a", b"1") == base + 1
    assert await store.put("/a", b"2") == base + 2
    assert await store.put("/b", b"x") == base + 3
    kv = await store.get("/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (
        b"2", base + 1, base + 2, 2, 0
    )
    assert await store.delete("/a") == base + 4
    assert await store.get("/a") is None
    assert await store.put("/a", b"3") == base + 5
    again = await store.get("/a")
    assert again is not None and (again.create_revision, again.version) == (base + 5, 1)
    assert await store.revision() == base + 5


@contract()
async def test_compare_on_revision_writes_only_when_it_holds(store: Store) -> None:
    """A matching mod_revision writes; a stale one raises CompareFailed and writes nothing."""
    rev = await store.put("/k", b"v1")
    assert await store.put("/k", b"v2", expected_mod_revision=rev) == rev + 1
    with pytest.raises(CompareFailed, match="mod_revision"):
        await store.put("/k", b"v3", expected_mod_revision=rev)
    kv = await store.get("/k")
    assert kv is not None and kv.value == b"v2"
    assert await store.revision() == rev + 1
    with pytest.raises(CompareFailed):
        await store.put("/missing", b"x", expected_mod_revision=rev)
    assert await store.get("/missing") is None


@contract()
async def test_create_twice_fails(store: Store) -> None:
    """create() succeeds once and raises CompareFailed while the key exists."""
    base = await store.revision()
    await store.create("/users/admin", b"{}")
    with pytest.raises(CompareFailed, match="absent"):
        await store.create("/users/admin", b"{}")
    assert await store.revision() == base + 1


@contract()
async def test_delete_rules(store: Store) -> None:
    """delete of a missing key is None without a revision; a stale compare deletes nothing."""
    rev = await store.put("/k", b"v")
    assert await store.delete("/nope") is None
    assert await store.revision() == rev
    with pytest.raises(CompareFailed):
        await store.delete("/k", expected_mod_revision=rev + 10)
    assert await store.get("/k") is not None
    assert await store.delete("/k", expected_mod_revision=rev) == rev + 1


@contract()
async def test_range_prefix_limit_and_start_after(store: Store) -> None:
    """range returns keys under the prefix in order, paged by limit and start_after."""
    base = await store.revision()
    for key in ["/u/c", "/u/a", "/u/b", "/v/a", "/u", "/ua"]:
        await store.put(key, key.encode())
    kvs, rev = await store.range("/u/")
    assert [kv.key for kv in kvs] == ["/u/a", "/u/b", "/u/c"]
    assert rev == base + 6
    page, _ = await store.range("/u/", limit=2)
    assert [kv.key for kv in page] == ["/u/a", "/u/b"]
    rest, _ = await store.range("/u/", limit=2, start_after="/u/b")
    assert [kv.key for kv in rest] == ["/u/c"]
    everything, _ = await store.range("")
    assert len(everything) == 6


def test_status_names_the_backend_and_is_healthy(backend: str, tmp_path: Path) -> None:
    """status() reports the backend under test as healthy, with an endpoint."""

    async def main() -> None:
        store = await open_contract_store(backend, tmp_path, DEFAULT_TEST_HISTORY)
        try:
            status = await store.status()
        finally:
            await store.close()
        assert (status.backend, status.healthy) == (backend, True)
        assert status.endpoint

    asyncio.run(main())


# -- transactions --------------------------------------------------------------------------------


@contract()
async def test_txn_creates_several_keys_at_one_revision(store: Store) -> None:
    """A txn of create-if-absent compares and puts writes every key at one new revision."""
    base = await store.revision()
    ops = [Put("/t/a", b"1"), Put("/t/b", b"2")]
    rev = await store.txn([Compare("/t/a", 0), Compare("/t/b", 0)], ops)
    assert rev == base + 1 == await store.revision()
    kvs, _ = await store.range("/t/")
    assert [(kv.key, kv.value, kv.mod_revision, kv.version) for kv in kvs] == [
        ("/t/a", b"1", rev, 1), ("/t/b", b"2", rev, 1)
    ]


@contract()
async def test_txn_compare_failure_writes_nothing(store: Store) -> None:
    """One failing compare raises CompareFailed naming its key; no op is applied."""
    taken = await store.put("/t/b", b"old")
    keep = await store.put("/t/c", b"keep")
    ops: list[Op] = [Put("/t/a", b"1"), Put("/t/b", b"2"), Delete("/t/c")]
    with pytest.raises(CompareFailed, match="'/t/b'"):
        await store.txn([Compare("/t/a", 0), Compare("/t/b", 0)], ops)
    with pytest.raises(CompareFailed, match="'/t/c'"):
        await store.txn([Compare("/t/c", keep - 1)], ops)
    assert await store.revision() == keep
    assert await store.get("/t/a") is None
    b, c = await store.get("/t/b"), await store.get("/t/c")
    assert b is not None and (b.value, b.mod_revision) == (b"old", taken)
    assert c is not None and c.value == b"keep"
    assert await store.txn([Compare("/t/c", keep)], ops) == keep + 1


@contract()
async def test_txn_events_share_a_revision_and_arrive_together(store: Store) -> None:
    """A watch delivers all of a txn's events under its prefix at one revision, in op order."""
    await store.put("/e/x", b"gone soon")
    events = store.watch("/e/")
    ops: list[Op] = [Put("/e/b", b"1"), Delete("/e/x"), Put("/other/z", b"-"), Put("/e/a", b"2")]
    rev = await store.txn([], ops)
    first = (await take(events, 1))[0]
    got = [first, await ready_now(events), await ready_now(events)]
    assert [(e.type, e.kv.key) for e in got] == [
        ("put", "/e/b"), ("delete", "/e/x"), ("put", "/e/a")
    ]
    assert {e.kv.mod_revision for e in got} == {rev}
    assert got[1].prev_kv is not None and got[1].prev_kv.value == b"gone soon"
    assert await nothing_pending(events)


@contract()
async def test_watch_resumed_after_a_multi_event_revision(store: Store) -> None:
    """Resuming from R+1 after all of revision R yields the later events once, none of R."""
    base = await store.revision()
    events = store.watch("/r/", start_revision=base + 1)
    r1 = await store.txn([], [Put(f"/r/{i}", b"a") for i in range(3)])
    r2 = await store.txn([], [Put("/r/0", b"b"), Delete("/r/1")])
    r3 = await store.put("/r/2", b"c")
    seen = await take(events, 3)
    assert {e.kv.mod_revision for e in seen} == {r1}
    assert isinstance(events, AsyncGenerator)  # backends return closable generators
    await events.aclose()
    resumed = store.watch("/r/", start_revision=seen[-1].kv.mod_revision + 1)
    got = await take(resumed, 3)
    assert [(e.kv.mod_revision, e.type, e.kv.key) for e in got] == [
        (r2, "put", "/r/0"), (r2, "delete", "/r/1"), (r3, "put", "/r/2")
    ]
    assert await nothing_pending(resumed)


@contract()
async def test_a_txn_that_changes_nothing_keeps_the_revision(store: Store) -> None:
    """No ops, or only deletes of absent keys: the current revision comes back, no event."""
    base = await store.put("/n/here", b"v")
    events = store.watch("/n/")
    assert await store.txn([], []) == base
    assert await store.txn([Compare("/n/here", base)], [Delete("/n/absent")]) == base
    assert await store.revision() == base
    assert await nothing_pending(events)


@contract()
async def test_txn_with_a_key_twice_is_a_value_error(store: Store) -> None:
    """Two ops on one key raise ValueError (as in etcd) and write nothing."""
    base = await store.revision()
    with pytest.raises(ValueError, match="/d/k"):
        await store.txn([], [Put("/d/k", b"1"), Put("/d/other", b"x"), Delete("/d/k")])
    assert await store.revision() == base
    assert await store.get("/d/other") is None


# -- leases --------------------------------------------------------------------------------------


@contract()
async def test_lease_expiry_deletes_its_keys(store: Store) -> None:
    """When a lease's TTL runs out its keys go at one revision, each with a delete event."""
    lease = await store.grant_lease(1)
    assert lease > 0
    events = store.watch("/l/")
    await store.put("/l/a", b"1", lease=lease)
    await store.create("/l/b", b"2", lease=lease)
    await store.put("/l/c", b"3")
    kv = await store.get("/l/a")
    assert kv is not None and kv.lease == lease
    await take(events, 3)
    gone = await take(events, 2, timeout=15)
    assert {(e.type, e.kv.key) for e in gone} == {("delete", "/l/a"), ("delete", "/l/b")}
    assert gone[0].kv.mod_revision == gone[1].kv.mod_revision
    assert all(e.prev_kv is not None and e.prev_kv.lease == lease for e in gone)
    assert await store.get("/l/a") is None and await store.get("/l/c") is not None
    with pytest.raises(LeaseNotFound):
        await store.keep_alive(lease)


@contract()
async def test_keep_alive_keeps_leased_keys(store: Store) -> None:
    """Keys of a lease renewed well past its TTL stay; once renewals stop, they go."""
    lease = await store.grant_lease(1)
    await store.put("/ka/k", b"v", lease=lease)
    events = store.watch("/ka/")
    deleted: asyncio.Task[Event] = asyncio.ensure_future(anext(events))
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # renewals paced by a quarter TTL
        assert await store.keep_alive(lease) >= 1
        await asyncio.sleep(0.25)
    assert await store.get("/ka/k") is not None
    assert not deleted.done()
    gone = await asyncio.wait_for(deleted, 15)
    assert (gone.type, gone.kv.key) == ("delete", "/ka/k")


@contract()
async def test_revoke_deletes_the_keys_at_one_revision(store: Store) -> None:
    """revoke_lease deletes every attached key at one revision; revoking again does nothing."""
    lease, empty = await store.grant_lease(60), await store.grant_lease(60)
    await store.put("/rv/a", b"1", lease=lease)
    await store.put("/rv/b", b"2", lease=lease)
    rev = await store.put("/rv/free", b"3")
    events = store.watch("/rv/")
    await store.revoke_lease(lease)
    gone = await take(events, 2)
    assert {(e.type, e.kv.key) for e in gone} == {("delete", "/rv/a"), ("delete", "/rv/b")}
    assert {e.kv.mod_revision for e in gone} == {rev + 1}
    await store.revoke_lease(lease)
    await store.revoke_lease(empty)  # a lease without keys ends without a revision
    assert await store.revision() == rev + 1
    assert await store.get("/rv/free") is not None
    for ended in (lease, empty):
        with pytest.raises(LeaseNotFound):
            await store.keep_alive(ended)


@contract()
async def test_writes_with_a_dead_lease_fail_and_write_nothing(store: Store) -> None:
    """put, create and txn naming an unknown or revoked lease raise LeaseNotFound."""
    with pytest.raises(LeaseNotFound):
        await store.keep_alive(UNKNOWN_LEASE)
    lease = await store.grant_lease(60)
    await store.revoke_lease(lease)
    base = await store.revision()
    for dead in (lease, UNKNOWN_LEASE):
        with pytest.raises(LeaseNotFound) as info:
            await store.put("/dl/a", b"1", lease=dead)
        assert info.value.lease == dead
        with pytest.raises(LeaseNotFound):
            await store.create("/dl/a", b"1", lease=dead)
        with pytest.raises(LeaseNotFound):
            await store.txn([], [Put("/dl/b", b"2"), Put("/dl/a", b"1", lease=dead)])
    assert await store.revision() == base
    assert (await store.range("/dl/"))[0] == []


@contract()
async def test_a_put_without_lease_detaches_the_key(store: Store) -> None:
    """Rewriting a leased key without a lease (or with another) takes it off the first lease."""
    lease, other = await store.grant_lease(60), await store.grant_lease(60)
    for key in ("/dt/a", "/dt/b", "/dt/c"):
        await store.put(key, b"leased", lease=lease)
    await store.put("/dt/a", b"free")
    await store.txn([], [Put("/dt/b", b"moved", lease=other)])
    a, b = await store.get("/dt/a"), await store.get("/dt/b")
    assert a is not None and a.lease == 0
    assert b is not None and b.lease == other
    await store.revoke_lease(lease)
    kvs, _ = await store.range("/dt/")
    assert [kv.key for kv in kvs] == ["/dt/a", "/dt/b"]
    await store.revoke_lease(other)
    assert [kv.key for kv in (await store.range("/dt/"))[0]] == ["/dt/a"]


# -- watches -------------------------------------------------------------------------------------


@contract()
async def test_watch_from_now_sees_only_later_changes(store: Store) -> None:
    """A watch without start_revision skips the past and follows new writes under its prefix."""
    base = await store.revision()
    await store.put("/w/old", b"0")
    events = store.watch("/w/")
    await store.put("/other", b"x")
    await store.put("/w/new", b"1")
    await store.delete("/w/old")
    got = await take(events, 2)
    assert [(e.type, e.kv.key) for e in got] == [("put", "/w/new"), ("delete", "/w/old")]
    assert got[1].prev_kv is not None and got[1].prev_kv.value == b"0"
    assert got[1].kv.mod_revision == base + 4
    assert await nothing_pending(events)


@contract()
async def test_watch_from_old_revision_replays_then_follows(store: Store) -> None:
    """Replay from R and live changes join without a gap or a duplicate."""
    base = await store.revision()
    for i in range(5):
        await store.put(f"/r/{i}", b"%d" % i)
    events = store.watch("/r/", start_revision=base + 3)
    first = await take(events, 3)
    await store.put("/other", b"x")
    await store.put("/r/5", b"5")
    rest = await take(events, 1)
    revs = [e.kv.mod_revision - base for e in first + rest]
    assert revs == [3, 4, 5, 7]
    assert first[0].prev_kv is None
    assert await nothing_pending(events)


@contract()
async def test_watch_resumes_after_close(store: Store) -> None:
    """Closing a watch and reopening it from last+1 yields exactly the missed events."""
    base = await store.revision()
    events = store.watch("/x/", start_revision=base + 1)
    await store.put("/x/1", b"a")
    (seen,) = await take(events, 1)
    assert isinstance(events, AsyncGenerator)  # backends return closable generators
    await events.aclose()
    await store.put("/x/2", b"b")
    await store.put("/x/3", b"c")
    resumed = store.watch("/x/", start_revision=seen.kv.mod_revision + 1)
    got = await take(resumed, 2)
    assert [e.kv.key for e in got] == ["/x/2", "/x/3"]


@contract(history=4)
async def test_watch_from_compacted_revision_raises(store: Store) -> None:
    """Only the last N revisions can be watched; older ones raise Compacted."""
    base = await store.revision()
    for i in range(10):
        await store.put("/c", b"%d" % i)
    with pytest.raises(Compacted) as info:
        store.watch("/c", start_revision=base + 5)
    assert info.value.compact_revision == base + 7
    events = store.watch("/c", start_revision=base + 7)
    assert [e.kv.mod_revision - base for e in await take(events, 4)] == [7, 8, 9, 10]


@contract(history=4)
async def test_slow_watcher_falling_behind_history_gets_compacted(store: Store) -> None:
    """A watcher that lets more than N revisions pass gets Compacted, never a silent gap."""
    events = store.watch("/s")
    await store.put("/s", b"0")
    await take(events, 1)
    for i in range(6):
        await store.put("/s", b"%d" % i)
    with pytest.raises(Compacted):
        await take(events, 1)


@contract()
async def test_watch_ends_when_the_store_closes(store: Store) -> None:
    """An open watch finishes (StopAsyncIteration) when the store is closed."""
    events = store.watch("/")
    waiter = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 5)


@contract()
async def test_many_watchers_see_the_same_sequence(store: Store) -> None:
    """Concurrent writers and several watchers: every watcher sees every revision once, in order."""
    base = await store.revision()
    watchers = [store.watch("/m/") for _ in range(3)]

    async def writer(n: int) -> None:
        for i in range(50):
            await store.put(f"/m/{n}/{i % 7}", b"v")
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(n) for n in range(4)))
    for events in watchers:
        revs = [e.kv.mod_revision for e in await take(events, 200)]
        assert revs == list(range(base + 1, base + 201))
