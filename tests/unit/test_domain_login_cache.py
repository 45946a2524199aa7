"""The login cache (MemoryStore): tokens and users followed from the store's watch, so that
authentication on one server reads no store while the cache is current, refuses a token deleted
or a user disabled through another server once the watch delivers it, sees its own writes at
once, lists again after a compaction or a failed watch, and reads the store (so a dead store
answers as it does without a cache) while it cannot vouch for the cache."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from corral.server.context import ServerContext
from corral.server.domain.credentials import digest_token_secret, new_id, new_token_secret
from corral.server.domain.login_cache import Collection, LoginCache, slim_token
from corral.server.domain.tokens import Principal
from corral.store.base import Event, KeyValue, StoreUnavailable
from tests.support.flaky_store import FlakyStore

T = TypeVar("T")
FOLLOW_TIMEOUT_S = 1.0  # a change through one server must be in force on another within this
HEARTBEAT_S = 0.02
FRESH_S = 0.2
TTL_MS = 3_600_000


class DownStore(FlakyStore):
    """A FlakyStore whose `revision()` (the cache's heartbeat) fails too while it is down."""

    async def revision(self) -> int:
        self._check_up()
        return await super().revision()


def run(body: Callable[[DownStore], Awaitable[T]], *, history: int = 10_000) -> T:
    """Run `body` against a fresh DownStore."""

    async def main() -> T:
        store = DownStore(history=history)
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


async def until_refused(ctx: ServerContext, token: str, what: str) -> str:
    """Wait until `ctx` refuses `token`; the reason it gives."""
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while True:
        answer = await ctx.tokens.authenticate(token)
        if isinstance(answer, str):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {FOLLOW_TIMEOUT_S}s: {what}")
        await asyncio.sleep(0.005)


def servers(store: DownStore, tmp_path: Path, n: int = 2) -> list[ServerContext]:
    """`n` server contexts sharing one store, with quick login-cache heartbeats."""
    contexts = [ServerContext(store=store, data_dir=tmp_path) for _ in range(n)]
    for ctx in contexts:
        ctx.logins.heartbeat_s, ctx.logins.fresh_s = HEARTBEAT_S, FRESH_S
    return contexts


async def login(ctx: ServerContext, username: str = "ann") -> tuple[str, str]:
    """A new user and a session token for it, written through `ctx`: (user id, token)."""
    user = await ctx.users.create(username=username, password="password-0001")
    _, token = await ctx.tokens.issue(user.id, ttl_ms=TTL_MS, description="", kind="session")
    return user.id, token


def disable(data: dict[str, Any]) -> dict[str, Any]:
    """A user change: disabled."""
    return {**data, "enabled": False}


def test_authentication_from_the_cache_reads_no_store(tmp_path: Path) -> None:
    """Once B's cache holds a token made through A, B authenticates it (and re-checks it)
    with no store read, with the user's name and admin flag."""

    async def body(store: DownStore) -> None:
        a, b = servers(store, tmp_path)
        await b.logins.start_following()
        user_id, token = await login(a)
        token_id = token.partition(":")[0]
        await until(lambda: b.logins.token(token_id) is not None, "the token in B's cache")
        await until(lambda: b.logins.user(user_id) is not None, "the user in B's cache")
        reads = store.reads
        principal = await b.tokens.authenticate(token)
        assert principal == Principal(user_id, "ann", False, token_id)
        assert await b.tokens.still_valid(principal)
        assert await b.tokens.authenticate(f"{token_id}:wrong-secret") == \
            "invalid or deleted token"
        assert store.reads == reads
        await b.logins.stop_following()

    run(body)


def test_a_token_deleted_through_another_server_is_refused(tmp_path: Path) -> None:
    """A logout through A: B refuses the token (and `still_valid` turns false) as soon as its
    watch delivers the deletion."""

    async def body(store: DownStore) -> None:
        a, b = servers(store, tmp_path)
        await b.logins.start_following()
        _, token = await login(a)
        token_id = token.partition(":")[0]
        await until(lambda: b.logins.token(token_id) is not None, "the token in B's cache")
        principal = await b.tokens.authenticate(token)
        assert isinstance(principal, Principal)
        assert await a.tokens.revoke(token_id)
        assert await until_refused(b, token, "B refusing the token") == \
            "invalid or deleted token"
        assert not await b.tokens.still_valid(principal)
        await b.logins.stop_following()

    run(body)


def test_a_user_disabled_through_another_server_is_refused(tmp_path: Path) -> None:
    """A user disabled through A: B refuses its token once the watch delivers the change, and
    accepts it again once the user is enabled again."""

    async def body(store: DownStore) -> None:
        a, b = servers(store, tmp_path)
        await b.logins.start_following()
        user_id, token = await login(a)
        await until(lambda: b.logins.user(user_id) is not None, "the user in B's cache")
        assert isinstance(await b.tokens.authenticate(token), Principal)
        await a.users.update(user_id, disable)
        assert "disabled" in await until_refused(b, token, "B refusing the disabled user")
        await a.users.update(user_id, lambda data: {**data, "enabled": True})
        await until(lambda: bool(getattr(b.logins.user(user_id), "enabled", False)),
                    "the user enabled in B's cache")
        assert isinstance(await b.tokens.authenticate(token), Principal)
        await b.logins.stop_following()

    run(body)


def test_a_deleted_user_is_refused_and_its_tokens_leave_the_cache(tmp_path: Path) -> None:
    """A user deleted through A: its tokens and the user leave B's cache and B refuses."""

    async def body(store: DownStore) -> None:
        a, b = servers(store, tmp_path)
        await b.logins.start_following()
        user_id, token = await login(a)
        token_id = token.partition(":")[0]
        await until(lambda: b.logins.token(token_id) is not None, "the token in B's cache")
        user = await a.users.require(user_id)
        await a.users.delete(user)
        assert await until_refused(b, token, "B refusing the token") == \
            "invalid or deleted token"
        await until(lambda: b.logins.user(user_id) is None, "the user gone from B's cache")
        assert b.logins.token(token_id) is None
        await b.logins.stop_following()

    run(body)


def test_own_writes_are_in_force_before_the_watch_delivers_them(tmp_path: Path) -> None:
    """On one server, a token it issued is authenticated from its cache, and a logout or a
    disabled user is refused on the very next request; the watch delivering the older put
    afterwards does not bring the deleted token back."""

    async def body(store: DownStore) -> None:
        (a,) = servers(store, tmp_path, 1)
        await a.logins.start_following()
        user_id, token = await login(a)  # no await here yields to the watch task
        token_id = token.partition(":")[0]
        reads = store.reads
        assert isinstance(await a.tokens.authenticate(token), Principal)
        assert store.reads == reads  # the learnt token and user, not the store
        assert await a.tokens.revoke(token_id)
        assert await a.tokens.authenticate(token) == "invalid or deleted token"
        bob = await a.users.create(username="bob", password="password-0002")
        record, second = await a.tokens.issue(bob.id, ttl_ms=TTL_MS, description="",
                                              kind="session")
        disabled = await a.users.update(bob.id, disable)
        assert "disabled" in str(await a.tokens.authenticate(second))
        await until(lambda: a.logins.tokens.position >= record.mod_revision,
                    "the tokens watch past the last token")
        await until(lambda: a.logins.users.position >= disabled.mod_revision,
                    "the users watch past the last change")
        assert a.logins.token(token_id) is None
        assert a.logins.user(user_id) is not None
        assert "disabled" in str(await a.tokens.authenticate(second))
        await a.logins.stop_following()

    run(body)


def test_without_following_authentication_reads_the_store(tmp_path: Path) -> None:
    """Before following starts (tools, tests) every authentication reads the store."""

    async def body(store: DownStore) -> None:
        (a,) = servers(store, tmp_path, 1)
        _, token = await login(a)
        reads = store.reads
        assert isinstance(await a.tokens.authenticate(token), Principal)
        assert store.reads == reads + 2  # the token, then its user
        assert not a.logins.current

    run(body)


def test_a_store_that_stops_answering_is_not_vouched_for(tmp_path: Path) -> None:
    """When the store stops answering, within the freshness window authentication goes back
    to the store and fails with its error (503 on the wire) instead of answering from the
    cache; when it answers again the cache is used again."""

    async def body(store: DownStore) -> None:
        (a,) = servers(store, tmp_path, 1)
        _, token = await login(a)
        await a.logins.start_following()
        assert a.logins.current
        store.down = True
        await until(lambda: not a.logins.current, "the cache no longer current",
                    timeout=FRESH_S + 1.0)
        with pytest.raises(StoreUnavailable):
            await a.tokens.authenticate(token)
        store.down = False
        await until(lambda: a.logins.current, "the cache current again")
        reads = store.reads
        assert isinstance(await a.tokens.authenticate(token), Principal)
        assert store.reads == reads
        await a.logins.stop_following()

    run(body)


def test_a_failed_watch_stops_the_cache_until_it_is_listed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch that fails makes authentication read the store until the collection has been
    listed again; then a later logout through A is refused by B from its cache."""

    async def body(store: DownStore) -> None:
        a, b = servers(store, tmp_path)
        await b.logins.start_following()
        _, token = await login(a)
        token_id = token.partition(":")[0]
        await until(lambda: b.logins.token(token_id) is not None, "the token in B's cache")
        store.watch_failures = 2  # both followers' watches fail on their next event
        await login(a, "bob")
        await until(lambda: not b.logins.current, "B's cache set aside")
        assert isinstance(await b.tokens.authenticate(token), Principal)  # from the store
        await until(lambda: b.logins.current, "B's cache listed again", timeout=3.0)
        await a.tokens.revoke(token_id)
        assert await until_refused(b, token, "B refusing the token") == \
            "invalid or deleted token"
        assert b.logins.token(token_id) is None
        await b.logins.stop_following()

    with caplog.at_level(logging.WARNING, logger="corral.server.domain.login_cache"):
        run(body)
    assert "following the tokens failed" in caplog.text


def test_following_lists_again_after_a_compaction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache that fell behind the kept history lists the tokens again and holds all of
    them, then follows again."""

    async def body(store: DownStore) -> None:
        a, b = servers(store, tmp_path)
        user_id, _ = await login(a)
        await b.logins.start_following()
        issued = []
        for _ in range(6):  # no await here yields to the loop: B falls 6 revisions behind
            record, _ = await a.tokens.issue(user_id, ttl_ms=TTL_MS, description="",
                                             kind="apikey")
            issued.append(record.id)
        await until(lambda: all(b.logins.token(t) for t in issued), "every token on B")
        await a.tokens.revoke(issued[0])
        await until(lambda: b.logins.token(issued[0]) is None, "following again")
        await b.logins.stop_following()

    with caplog.at_level(logging.INFO, logger="corral.server.domain.login_cache"):
        run(body, history=2)
    assert "compacted" in caplog.text


def token_kv(token_id: str, revision: int, user_id: str = "u-1") -> KeyValue:
    """A stored token at `revision`."""
    data = {"userId": user_id, "secretDigest": digest_token_secret("s"), "expiresAtMs": 0,
            "kind": "session"}
    return KeyValue(f"/corral/tokens/{token_id}", json.dumps(data).encode(), 1, revision, 1)


def test_learnt_writes_win_over_older_watch_events() -> None:
    """A delete or put this server learnt (even while it lists) is not undone by a watch event
    or a listing older than it; newer events apply; learning what the watch already delivered
    changes nothing."""
    collection = Collection("tokens", slim_token)
    collection.active = True  # as start_following sets it before the first listing
    collection.learn_delete("token-a", 6)  # during the listing, which began before the delete
    collection.load([token_kv("token-a", 3)], 4)
    assert collection.get("token-a") is None
    collection.learn_put("token-b", json.loads(token_kv("token-b", 7, "u-2").value), 7)
    assert collection.get("token-a") is None and collection.get("token-b") is not None
    collection.apply(Event("put", token_kv("token-a", 5), None))  # older than the delete
    collection.apply(Event("put", token_kv("token-b", 5, "u-old"), None))  # older than the put
    assert collection.get("token-a") is None
    assert getattr(collection.get("token-b"), "user_id", "") == "u-2"
    collection.load([token_kv("token-a", 5)], 5)  # a listing from before both writes
    assert collection.get("token-a") is None and collection.get("token-b") is not None
    collection.apply(Event("delete", KeyValue("/corral/tokens/token-a", b"", 0, 6, 0), None))
    collection.apply(Event("put", token_kv("token-a", 8), None))  # newer: applies
    assert collection.get("token-a") is not None and collection.position == 8
    collection.learn_delete("token-a", 8)  # the watch already delivered revision 8: ignored
    assert collection.get("token-a") is not None


def test_cached_tokens_hold_only_what_authentication_needs() -> None:
    """20,000 cached tokens take under 400 bytes each (ids included): no descriptions,
    creation times or digests as hex text."""
    kvs = []
    for n in range(20_000):
        data = {"userId": f"u-{n % 10:05d}", "description": "a description " * 4,
                "secretDigest": digest_token_secret(new_token_secret()), "ttl": TTL_MS,
                "expiresAtMs": 1_900_000_000_000 + n, "kind": "session",
                "created": "2026-01-01T00:00:00Z"}
        kvs.append(KeyValue(f"/corral/tokens/{new_id('token')}", json.dumps(data).encode(),
                            n + 1, n + 1, 1))
    collection = Collection("tokens", slim_token)
    tracemalloc.start()
    try:
        collection.load(kvs, 20_000)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(collection.entries) == len({kv.key for kv in kvs})
    assert used / len(kvs) < 400


def test_start_following_fails_with_the_store_error(tmp_path: Path) -> None:
    """A store that cannot be listed at start-up raises its error and starts nothing."""

    async def body(store: DownStore) -> None:
        cache = LoginCache(store)
        store.down = True
        with pytest.raises(StoreUnavailable):
            await cache.start_following()
        assert not cache.following and not cache.current

    run(body)
