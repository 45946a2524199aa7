"""Settings (MemoryStore): checked writes, and the cache that follows the store's watch so a
setting written through one server is in force on another, read without a store round trip,
relisted after a compaction or a store failure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from corral.server.context import ServerContext
from corral.server.domain.errors import Invalid, NotFound, ReadOnly
from corral.server.domain.settings import REGISTRY_SETTING, SERVER_URL_SETTING
from corral.store.base import Store
from tests.support.flaky_store import FlakyStore

T = TypeVar("T")
FOLLOW_TIMEOUT_S = 1.0  # a change must be in force on the other server within this


def run(body: Callable[[FlakyStore], Awaitable[T]], *, history: int = 10_000) -> T:
    """Run `body` against a fresh FlakyStore (a MemoryStore that can fail)."""

    async def main() -> T:
        store = FlakyStore(history=history)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def until(condition: Callable[[], bool], what: str,
                timeout: float = FOLLOW_TIMEOUT_S) -> None:
    """Wait (yielding to the loop) until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)


def servers(store: Store, tmp_path: Path, n: int = 2, flag: str = "") -> list[ServerContext]:
    """`n` server contexts sharing one store."""
    return [ServerContext(store=store, data_dir=tmp_path, server_url_flag=flag)
            for _ in range(n)]


def test_writes_are_checked(tmp_path: Path) -> None:
    """Unknown names are NotFound, read-only ones ReadOnly, bad values Invalid naming the
    setting; nothing is written for any of them."""

    async def body(store: FlakyStore) -> None:
        (ctx,) = servers(store, tmp_path, 1)
        with pytest.raises(NotFound, match="known: "):
            await ctx.settings.set("no-such", "x")
        with pytest.raises(ReadOnly, match="cacerts"):
            await ctx.settings.set("cacerts", "x")
        with pytest.raises(Invalid, match=REGISTRY_SETTING):
            await ctx.settings.set(REGISTRY_SETTING, "https://x/")
        assert await store.revision() == 0

    run(body)


def test_without_following_reads_go_to_the_store(tmp_path: Path) -> None:
    """Before following starts, a value written by another server is read from the store."""

    async def body(store: FlakyStore) -> None:
        a, b = servers(store, tmp_path)
        assert await a.settings.value("ui-pl") == "Corral"
        await b.settings.set("ui-pl", "Ranch")
        assert await a.settings.value("ui-pl") == "Ranch"

    run(body)


def test_a_change_through_one_server_is_in_force_on_another(tmp_path: Path) -> None:
    """Server B follows the store: A's write reaches B's cache within a second, and B then
    reads it (and server-url) with no store round trip."""

    async def body(store: FlakyStore) -> None:
        a, b = servers(store, tmp_path)
        await b.settings.start_following()
        await a.settings.set(SERVER_URL_SETTING, "https://rancher.test")
        await a.settings.set("ui-pl", "Ranch")
        await until(lambda: b.server_url == "https://rancher.test", "server-url on B")
        reads = store.reads
        assert await b.settings.value("ui-pl") == "Ranch"
        assert await b.settings.server_url() == "https://rancher.test"
        stored, _ = await b.settings.stored_all()
        assert sorted(stored) == [SERVER_URL_SETTING, "ui-pl"]
        assert store.reads == reads
        await b.settings.stop_following()

    run(body)


def test_own_write_is_read_back_at_once(tmp_path: Path) -> None:
    """A server reads its own write straight away, before its watch delivers it."""

    async def body(store: FlakyStore) -> None:
        (a,) = servers(store, tmp_path, 1)
        await a.settings.start_following()
        await a.settings.set("ui-pl", "Mine")
        assert await a.settings.value("ui-pl") == "Mine"
        await a.settings.stop_following()

    run(body)


def test_server_url_flag_wins_over_the_setting(tmp_path: Path) -> None:
    """With --server-url the stored setting does not change the URL in force; it is still
    stored and shown."""

    async def body(store: FlakyStore) -> None:
        (a,) = servers(store, tmp_path, 1, flag="https://flag.test")
        await a.settings.start_following()
        await a.settings.set(SERVER_URL_SETTING, "https://stored.test")
        assert a.server_url == "https://flag.test"
        assert await a.settings.server_url() == "https://flag.test"
        assert await a.settings.value(SERVER_URL_SETTING) == "https://stored.test"
        await a.settings.stop_following()

    run(body)


def test_following_lists_again_after_a_compaction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A follower that fell behind the kept history lists again and ends up current."""

    async def body(store: FlakyStore) -> None:
        a, b = servers(store, tmp_path)
        await b.settings.start_following()
        for n in range(6):  # no await yields to the loop here: B falls 6 revisions behind
            await a.settings.set("ui-pl", f"v{n}")
        await until(lambda: b.settings.cached_value("ui-pl") == "v5", "the last value on B")
        await a.settings.set("ui-pl", "after")
        await until(lambda: b.settings.cached_value("ui-pl") == "after", "following again")
        await b.settings.stop_following()

    with caplog.at_level(logging.INFO, logger="corral.server.domain.settings"):
        run(body, history=2)
    assert "compacted" in caplog.text


def test_following_survives_a_store_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch that fails keeps the cached values in force, then lists again and follows."""

    async def body(store: FlakyStore) -> None:
        a, b = servers(store, tmp_path)
        await a.settings.set("ui-pl", "before")
        await b.settings.start_following()
        store.watch_failures = 1
        await a.settings.set("ui-pl", "during")
        await until(lambda: "following the settings failed" in caplog.text, "the failure")
        assert b.settings.cached_value("ui-pl") in ("before", "during")
        await until(lambda: b.settings.cached_value("ui-pl") == "during", "relisted")
        await a.settings.set("ui-pl", "after")
        await until(lambda: b.settings.cached_value("ui-pl") == "after", "following again")
        await b.settings.stop_following()

    with caplog.at_level(logging.WARNING, logger="corral.server.domain.settings"):
        run(body)
