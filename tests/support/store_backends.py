"""The backends the Store contract tests (tests/unit/test_store_contract.py) run against, and
the helpers those tests use.

Adding a backend: put its name in CONTRACT_BACKENDS and a branch in `open_contract_store`; add it
to HISTORY_LIMITED_BACKENDS only when its kept history is exactly the `history` a test asks for
(the compaction tests are skipped for the others). The contract assumes fresh keys for every
test, not an empty store: a backend may start a test at any revision.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from corral.store.base import Event, Store
from corral.store.memory import MemoryStore
from corral.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.support.etcd_cluster import EtcdCluster

#: Every backend the contract runs against (the test ids use these names).
CONTRACT_BACKENDS: list[str] = ["memory", "sqlite"]
#: Backends whose history is the `history` given to `open_contract_store` (compaction tests).
HISTORY_LIMITED_BACKENDS: set[str] = {"memory", "sqlite"}
#: History the contract tests keep unless a test needs a small one.
DEFAULT_TEST_HISTORY = 10_000


async def open_contract_store(backend: str, tmp_path: Path, history: int) -> Store:
    """A store of `backend` for one test, opened on the test's running loop, in which no key
    the test did not write is visible. `tmp_path` is the test's own directory; `history` the
    revisions to keep (only honoured by HISTORY_LIMITED_BACKENDS)."""
    if backend == "memory":
        return MemoryStore(history=history)
    if backend == "sqlite":
        return SqliteStore.open(tmp_path / "store.db", history=history)
    if backend == "etcd":
        return await _open_etcd_store(history)
    raise ValueError(f"unknown contract backend {backend!r}; known: {CONTRACT_BACKENDS}")


# -- etcd: a real cluster started by tests/e2e/store (the contract runs there for "etcd") -------

#: The cluster "etcd" contract stores use; set by the fixture that started it.
ETCD_CLUSTER: list[EtcdCluster] = []


async def _open_etcd_store(history: int) -> Store:
    """An EtcdStore on ETCD_CLUSTER under a namespace of its own (fresh keys per test)."""
    from corral.store.etcd import connect_etcd

    if not ETCD_CLUSTER:
        raise RuntimeError("the etcd contract backend needs a cluster: run tests/e2e/store")
    namespace = f"/contract-{uuid.uuid4().hex}"
    return await connect_etcd(ETCD_CLUSTER[0].options(prefix=namespace), history=history)


# -- running a contract test ---------------------------------------------------------------------

StoreTest = Callable[[Store], Awaitable[None]]
PlainTest = Callable[[str, Path], None]


def contract(*, history: int | None = None) -> Callable[[StoreTest], PlainTest]:
    """Turn `async def test_x(store)` into a pytest test taking the `backend` fixture and
    `tmp_path`: it opens the store on a fresh loop, runs the body, and closes the store. With
    `history`, the store keeps that many revisions, and backends outside
    HISTORY_LIMITED_BACKENDS skip the test."""

    def wrap(body: StoreTest) -> PlainTest:
        def test(backend: str, tmp_path: Path) -> None:
            if history is not None and backend not in HISTORY_LIMITED_BACKENDS:
                pytest.skip(f"{backend} compacts its history on its own terms")

            async def main() -> None:
                store = await open_contract_store(
                    backend, tmp_path, history or DEFAULT_TEST_HISTORY
                )
                try:
                    await body(store)
                finally:
                    await store.close()

            asyncio.run(main())

        # not functools.wraps: pytest would then read the body's `store` parameter as a fixture
        test.__name__, test.__qualname__ = body.__name__, body.__qualname__
        test.__doc__, test.__module__ = body.__doc__, body.__module__
        return test

    return wrap


# -- reading a watch in a test -------------------------------------------------------------------


async def take(events: AsyncIterator[Event], count: int, timeout: float = 5) -> list[Event]:
    """The next `count` events, failing instead of hanging when they do not come."""
    return [await asyncio.wait_for(anext(events), timeout) for _ in range(count)]


async def nothing_pending(events: AsyncIterator[Event]) -> bool:
    """True when the watch has no event ready after the loop has gone idle. It closes the
    watch (its pending read is cancelled): use it as a test's last look at a watch."""
    task: asyncio.Task[Event] = asyncio.ensure_future(anext(events))
    for _ in range(20):
        await asyncio.sleep(0)
    pending = not task.done()
    task.cancel()
    return pending


async def ready_now(events: AsyncIterator[Event]) -> Event:
    """The next event, which must already be there (delivered with the one before it)."""
    task: asyncio.Task[Event] = asyncio.ensure_future(anext(events))
    for _ in range(20):
        await asyncio.sleep(0)
    assert task.done(), "the rest of a revision did not arrive with its first event"
    return task.result()
