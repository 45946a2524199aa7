"""The Store contract, run against every backend (memory and sqlite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from corral.store import Compacted, CompareFailed, Event, Store, open_store

Factory = Callable[..., Store]


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run one test body on a fresh event loop."""
    asyncio.run(coro)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory for a fresh store of the parametrised backend."""

    def make(history: int = 10_000) -> Store:
        url = "memory://" if request.param == "memory" else f"sqlite://{tmp_path}/store.db"
        return open_store(url, history=history)

    return make


async def take(events: AsyncIterator[Event], count: int) -> list[Event]:
    """The next `count` events, failing instead of hanging when they do not come."""
    return [await asyncio.wait_for(anext(events), 5) for _ in range(count)]


async def nothing_pending(events: AsyncIterator[Event]) -> bool:
    """True when the watch has no event ready after the loop has gone idle."""
    task: asyncio.Task[Event] = asyncio.ensure_future(anext(events))
    for _ in range(20):
        await asyncio.sleep(0)
    pending = not task.done()
    task.cancel()
    return pending


def with_store(make_store: Factory, body: Callable[[Store], Awaitable[None]], **kw: int) -> None:
    async def main() -> None:
        store = make_store(**kw)
        try:
            await body(store)
        finally:
            await store.close()

    run(main())


def test_each_write_bumps_the_revision_by_one(make_store: Factory) -> None:
    """put/delete return consecutive revisions; KeyValue tracks create/mod/version."""

    async def body(store: Store) -> None:
        assert await store.revision() == 0
        assert await store.put("/a", b"1") == 1
        assert await store.put("/a", b"2") == 2
        assert await store.put("/b", b"x") == 3
        kv = await store.get("/a")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", 1, 2, 2)
        assert await store.delete("/a") == 4
        assert await store.get("/a") is None
        assert await store.put("/a", b"3") == 5
        again = await store.get("/a")
        assert again is not None and (again.create_revision, again.version) == (5, 1)
        assert await store.revision() == 5

    with_store(make_store, body)


def test_compare_on_revision_writes_only_when_it_holds(make_store: Factory) -> None:
    """A matching mod_revision writes; a stale one raises CompareFailed and writes nothing."""

    async def body(store: Store) -> None:
        rev = await store.put("/k", b"v1")
        assert await store.put("/k", b"v2", expected_mod_revision=rev) == rev + 1
        with pytest.raises(CompareFailed, match="mod_revision"):
            await store.put("/k", b"v3", expected_mod_revision=rev)
        kv = await store.get("/k")
        assert kv is not None and kv.value == b"v2"
        assert await store.revision() == rev + 1
        with pytest.raises(CompareFailed):
            await store.put("/missing", b"x", expected_mod_revision=7)
        assert await store.get("/missing") is None

    with_store(make_store, body)


def test_create_twice_fails(make_store: Factory) -> None:
    """create() succeeds once and raises CompareFailed while the key exists."""

    async def body(store: Store) -> None:
        await store.create("/users/admin", b"{}")
        with pytest.raises(CompareFailed, match="absent"):
            await store.create("/users/admin", b"{}")
        assert await store.revision() == 1

    with_store(make_store, body)


def test_delete_rules(make_store: Factory) -> None:
    """delete of a missing key is None without a revision; a stale compare deletes nothing."""

    async def body(store: Store) -> None:
        rev = await store.put("/k", b"v")
        assert await store.delete("/nope") is None
        assert await store.revision() == rev
        with pytest.raises(CompareFailed):
            await store.delete("/k", expected_mod_revision=rev + 10)
        assert await store.get("/k") is not None
        assert await store.delete("/k", expected_mod_revision=rev) == rev + 1

    with_store(make_store, body)


def test_range_prefix_limit_and_start_after(make_store: Factory) -> None:
    """range returns keys under the prefix in order, paged by limit and start_after."""

    async def body(store: Store) -> None:
        for key in ["/u/c", "/u/a", "/u/b", "/v/a", "/u", "/ua"]:
            await store.put(key, key.encode())
        kvs, rev = await store.range("/u/")
        assert [kv.key for kv in kvs] == ["/u/a", "/u/b", "/u/c"]
        assert rev == 6
        page, _ = await store.range("/u/", limit=2)
        assert [kv.key for kv in page] == ["/u/a", "/u/b"]
        rest, _ = await store.range("/u/", limit=2, start_after="/u/b")
        assert [kv.key for kv in rest] == ["/u/c"]
        everything, _ = await store.range("")
        assert len(everything) == 6

    with_store(make_store, body)


def test_watch_from_now_sees_only_later_changes(make_store: Factory) -> None:
    """A watch without start_revision skips the past and follows new writes under its prefix."""

    async def body(store: Store) -> None:
        await store.put("/w/old", b"0")
        events = store.watch("/w/")
        await store.put("/other", b"x")
        await store.put("/w/new", b"1")
        await store.delete("/w/old")
        got = await take(events, 2)
        assert [(e.type, e.kv.key) for e in got] == [("put", "/w/new"), ("delete", "/w/old")]
        assert got[1].prev_kv is not None and got[1].prev_kv.value == b"0"
        assert got[1].kv.mod_revision == 4
        assert await nothing_pending(events)

    with_store(make_store, body)


def test_watch_from_old_revision_replays_then_follows(make_store: Factory) -> None:
    """Replay from R and live changes join without a gap or a duplicate."""

    async def body(store: Store) -> None:
        for i in range(5):
            await store.put(f"/r/{i}", b"%d" % i)
        events = store.watch("/r/", start_revision=3)
        first = await take(events, 3)
        await store.put("/other", b"x")
        await store.put("/r/5", b"5")
        rest = await take(events, 1)
        revs = [e.kv.mod_revision for e in first + rest]
        assert revs == [3, 4, 5, 7]
        assert first[0].prev_kv is None
        assert await nothing_pending(events)

    with_store(make_store, body)


def test_watch_resumes_after_close(make_store: Factory) -> None:
    """Closing a watch and reopening it from last+1 yields exactly the missed events."""

    async def body(store: Store) -> None:
        events = store.watch("/x/", start_revision=1)
        await store.put("/x/1", b"a")
        (seen,) = await take(events, 1)
        assert isinstance(events, AsyncGenerator)  # backends return closable generators
        await events.aclose()
        await store.put("/x/2", b"b")
        await store.put("/x/3", b"c")
        resumed = store.watch("/x/", start_revision=seen.kv.mod_revision + 1)
        got = await take(resumed, 2)
        assert [e.kv.key for e in got] == ["/x/2", "/x/3"]

    with_store(make_store, body)


def test_watch_from_compacted_revision_raises(make_store: Factory) -> None:
    """Only the last N revisions can be watched; older ones raise Compacted."""

    async def body(store: Store) -> None:
        for i in range(10):
            await store.put("/c", b"%d" % i)
        with pytest.raises(Compacted) as info:
            store.watch("/c", start_revision=5)
        assert info.value.compact_revision == 7
        events = store.watch("/c", start_revision=7)
        assert [e.kv.mod_revision for e in await take(events, 4)] == [7, 8, 9, 10]

    with_store(make_store, body, history=4)


def test_slow_watcher_falling_behind_history_gets_compacted(make_store: Factory) -> None:
    """A watcher that lets more than N revisions pass gets Compacted, never a silent gap."""

    async def body(store: Store) -> None:
        events = store.watch("/s")
        await store.put("/s", b"0")
        await take(events, 1)
        for i in range(6):
            await store.put("/s", b"%d" % i)
        with pytest.raises(Compacted):
            await take(events, 1)

    with_store(make_store, body, history=4)


def test_watch_ends_when_the_store_closes(make_store: Factory) -> None:
    """An open watch finishes (StopAsyncIteration) when the store is closed."""

    async def main() -> None:
        store = make_store()
        events = store.watch("/")
        waiter = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiter, 5)

    run(main())


def test_many_watchers_see_the_same_sequence(make_store: Factory) -> None:
    """Concurrent writers and several watchers: every watcher sees every revision once, in order."""

    async def body(store: Store) -> None:
        watchers = [store.watch("/m/") for _ in range(3)]

        async def writer(n: int) -> None:
            for i in range(50):
                await store.put(f"/m/{n}/{i % 7}", b"v")
                await asyncio.sleep(0)

        await asyncio.gather(*(writer(n) for n in range(4)))
        for events in watchers:
            revs = [e.kv.mod_revision for e in await take(events, 200)]
            assert revs == list(range(1, 201))

    with_store(make_store, body)
