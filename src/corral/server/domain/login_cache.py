"""The login cache: what authentication needs of the `tokens` and `users` collections, kept in
memory while following the store's watch, so an authenticated request costs no store round trip.

Per token only its secret's digest, expiry, user id and kind; per user only username, enabled
and admin (no password hashes: login reads the store). Each collection is listed at revision R
and watched from R + 1, and listed again when the watch's start is compacted or the watch fails.

When the cache may be used (`current`), the rule authentication follows:

- both collections are listed and their watches have not failed since, and
- a linearizable store read (the heartbeat, every HEARTBEAT_S = 0.1 s) that started less than
  FRESH_S = 0.5 s ago succeeded: when the store stops answering (no quorum, unreachable),
  authentication goes back to store reads within 0.5 s and answers 503 like every other
  request, instead of trusting a cache nobody can confirm. (An event loop starved of CPU for
  longer than that also falls back, for the requests it handles before the next heartbeat.)

Otherwise, and for a token or user the cache does not hold (created through another server and
not delivered yet), authentication reads the store. A token deleted or a user disabled through
another server is refused here as soon as the watch delivers the change. This server's own
writes go into the cache at once (`learn_*`), so a logout or a disabled user is refused on the
next request, before the watch delivers the write back; a watch event older than a learnt write
of the same key is ignored.

A watch stream that stalls without failing while the store otherwise answers is not seen by the
heartbeat; the store backend bounds that (etcd: a member without a leader cancels its watches,
and gRPC keepalive ends a dead connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from corral.server.domain.records import KEY_ROOT, TOKENS, USERS
from corral.store import StoreClosed
from corral.store.base import Compacted, Event, KeyValue, Store
from corral.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.1  # a linearizable store read this often …
FRESH_S = 0.5  # … and the cache is trusted this long after the last one that succeeded
RETRY_FIRST_S = 0.2  # pause before listing again after a failed watch …
RETRY_MAX_S = 5.0  # … doubling up to this


@dataclass(frozen=True, slots=True)
class CachedToken:
    """What authentication needs of one token."""

    digest: bytes  # sha256 of the secret
    expires_at_ms: int  # 0 = never
    user_id: str
    kind: str
    revision: int  # the mod revision this was read at

    def matches(self, secret: str) -> bool:
        """True when `secret` is this token's (constant-time comparison)."""
        return hmac.compare_digest(hashlib.sha256(secret.encode("utf-8")).digest(), self.digest)

    def expired(self, at_ms: int) -> bool:
        """True when the token has an expiry and it has passed."""
        return self.expires_at_ms > 0 and at_ms >= self.expires_at_ms


@dataclass(frozen=True, slots=True)
class CachedUser:
    """What authentication needs of one user."""

    username: str
    enabled: bool
    admin: bool
    revision: int


class _Entry(Protocol):
    @property
    def revision(self) -> int: ...


E = TypeVar("E", bound=_Entry)


def slim_token(data: dict[str, Any], revision: int) -> CachedToken | None:
    """The cached form of a stored token (None when its digest is not sha256 hex)."""
    try:
        digest = bytes.fromhex(str(data.get("secretDigest", "")))
    except ValueError:
        return None
    if len(digest) != hashlib.sha256().digest_size:
        return None
    return CachedToken(
        digest=digest,
        expires_at_ms=int(data.get("expiresAtMs") or 0),
        user_id=sys.intern(str(data.get("userId", ""))),
        kind=sys.intern(str(data.get("kind", ""))),
        revision=revision,
    )


def slim_user(data: dict[str, Any], revision: int) -> CachedUser:
    """The cached form of a stored user."""
    return CachedUser(
        username=str(data.get("username", "")),
        enabled=bool(data.get("enabled", True)),
        admin=bool(data.get("admin", False)),
        revision=revision,
    )


class Collection(Generic[E]):
    """One followed collection: its entries by id, the revision the cache holds every change up
    to (`position`), and this server's own deletes the watch has not delivered yet."""

    def __init__(self, collection: str, slim: Callable[[dict[str, Any], int], E | None]) -> None:
        self.name = collection
        self.prefix = f"{KEY_ROOT}{collection}/"
        self.slim = slim
        self.entries: dict[str, E] = {}
        self.position = 0
        self.active = False  # following was started (own writes are learnt from then on)
        self.listed = False  # listed, and the watch has not failed since
        self._deleted: dict[str, int] = {}  # id → revision of an own delete ahead of the watch

    def get(self, item_id: str) -> E | None:
        """The cached entry, or None."""
        return self.entries.get(item_id)

    def _slim(self, kv: KeyValue) -> E | None:
        try:
            data = json.loads(kv.value)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            log.warning("ignoring store key %s: its value is not a JSON object", kv.key)
            return None
        return self.slim(data, kv.mod_revision)

    def stop(self) -> None:
        """Following ended: forget everything (a new start lists again)."""
        self.active = self.listed = False
        self.entries, self._deleted, self.position = {}, {}, 0

    def load(self, kvs: list[KeyValue], revision: int) -> None:
        """Replace the entries with a listing at `revision`, keeping what this server learnt of
        later revisions."""
        fresh: dict[str, E] = {}
        for kv in kvs:
            item_id = kv.key[len(self.prefix):]
            entry = self._slim(kv) if item_id and "/" not in item_id else None
            if entry is not None:
                fresh[item_id] = entry
        for item_id, entry in self.entries.items():
            if entry.revision > revision:
                fresh[item_id] = entry
        self._deleted = {i: r for i, r in self._deleted.items() if r > revision}
        for item_id, deleted_at in self._deleted.items():
            entry = fresh.get(item_id)
            if entry is not None and entry.revision < deleted_at:
                del fresh[item_id]
        self.entries = fresh
        self.position = max(self.position, revision)
        self.listed = True

    def apply(self, event: Event) -> None:
        """One watch event (older than what this server learnt of the key: ignored)."""
        revision = event.kv.mod_revision
        item_id = event.kv.key[len(self.prefix):]
        if event.kv.key.startswith(self.prefix) and item_id and "/" not in item_id:
            known = self.entries.get(item_id)
            if (known is None or known.revision < revision) and \
                    self._deleted.get(item_id, 0) < revision:
                entry = self._slim(event.kv) if event.type == "put" else None
                if entry is None:
                    self.entries.pop(item_id, None)
                else:
                    self.entries[item_id] = entry
        self.position = max(self.position, revision)
        if self._deleted:
            self._deleted = {i: r for i, r in self._deleted.items() if r > self.position}

    def learn_put(self, item_id: str, data: dict[str, Any], revision: int) -> None:
        """This server wrote the item at `revision`."""
        if not self.active or revision <= self.position:
            return  # not following, or the watch has delivered it already
        known = self.entries.get(item_id)
        entry = self.slim(data, revision)
        if entry is not None and (known is None or known.revision < revision) and \
                self._deleted.get(item_id, 0) < revision:
            self.entries[item_id] = entry

    def learn_delete(self, item_id: str, revision: int) -> None:
        """This server deleted the item at `revision`."""
        if not self.active or revision <= self.position:
            return
        known = self.entries.get(item_id)
        if known is not None and known.revision < revision:
            del self.entries[item_id]
        self._deleted[item_id] = max(self._deleted.get(item_id, 0), revision)


class LoginCache:
    """Tokens and users of one store, cached while following its watch (see the module's
    docstring for when the cache is used)."""

    def __init__(self, store: Store, *, heartbeat_s: float = HEARTBEAT_S,
                 fresh_s: float = FRESH_S) -> None:
        self.store = store
        self.heartbeat_s = heartbeat_s
        self.fresh_s = fresh_s
        self.tokens: Collection[CachedToken] = Collection(TOKENS, slim_token)
        self.users: Collection[CachedUser] = Collection(USERS, slim_user)
        self._confirmed_at = float("-inf")  # monotonic time a successful store read started
        self._tasks: list[asyncio.Task[None]] = []
        self._stale_logged = False

    # -- reads -----------------------------------------------------------------------------

    @property
    def current(self) -> bool:
        """True when authentication may answer from the cache."""
        return (self.tokens.listed and self.users.listed
                and time.monotonic() - self._confirmed_at < self.fresh_s)

    def token(self, token_id: str) -> CachedToken | None:
        """The cached token (None when the cache does not hold it: ask the store)."""
        return self.tokens.get(token_id)

    def user(self, user_id: str) -> CachedUser | None:
        """The cached user (None when the cache does not hold it: ask the store)."""
        return self.users.get(user_id)

    # -- this server's writes --------------------------------------------------------------

    def learn_token(self, token_id: str, data: dict[str, Any], revision: int) -> None:
        """A token this server wrote at `revision`."""
        self.tokens.learn_put(token_id, data, revision)

    def forget_token(self, token_id: str, revision: int) -> None:
        """A token this server deleted at `revision`."""
        self.tokens.learn_delete(token_id, revision)

    def learn_user(self, user_id: str, data: dict[str, Any], revision: int) -> None:
        """A user this server wrote at `revision`."""
        self.users.learn_put(user_id, data, revision)

    def forget_user(self, user_id: str, revision: int) -> None:
        """A user this server deleted at `revision`."""
        self.users.learn_delete(user_id, revision)

    # -- following the store ---------------------------------------------------------------

    @property
    def following(self) -> bool:
        """True while the follower tasks run."""
        return any(not task.done() for task in self._tasks)

    async def start_following(self) -> None:
        """List both collections, then follow their watches and check the store with the
        heartbeat, in tasks (`stop_following` ends them). Raises the store's error when a first
        listing fails (then nothing is started). Calling it again while following does
        nothing."""
        if self.following:
            return
        started = time.monotonic()
        self.tokens.active = self.users.active = True
        try:
            positions = [await self._load(self.tokens), await self._load(self.users)]
        except BaseException:
            self.tokens.stop()
            self.users.stop()
            raise
        self._confirmed_at = started
        self._tasks = [
            asyncio.create_task(self._follow(self.tokens, positions[0]), name="tokens-follower"),
            asyncio.create_task(self._follow(self.users, positions[1]), name="users-follower"),
            asyncio.create_task(self._heartbeat(), name="login-cache-heartbeat"),
        ]

    async def stop_following(self) -> None:
        """End the tasks; authentication reads the store again."""
        tasks, self._tasks = self._tasks, []
        self.tokens.listed = self.users.listed = False
        await cancel_and_wait(tasks)
        self.tokens.stop()
        self.users.stop()

    async def _load(self, collection: Collection[E]) -> int:
        kvs, revision = await self.store.range(collection.prefix)
        collection.load(kvs, revision)
        return revision

    async def _follow(self, collection: Collection[E], revision: int) -> None:
        """Apply watch events from `revision + 1`; after a compaction or a failure the cache is
        not used until the collection is listed again (after a growing pause, unless it was a
        compaction). Returns when the store closes."""
        pause = RETRY_FIRST_S
        while True:
            try:
                watch = self.store.watch(collection.prefix, start_revision=revision + 1)
                async with _closing(watch):
                    async for event in watch:
                        collection.apply(event)
                        pause = RETRY_FIRST_S
                problem = "the store ended the watch"
            except StoreClosed:
                collection.listed = False
                return
            except Compacted:
                log.info("the %s watch start was compacted; listing them again", collection.name)
                problem = ""
            except Exception as exc:  # a store outage must not end following for good
                problem = f"{type(exc).__name__}: {exc}"
            collection.listed = False
            while True:
                if problem:
                    log.warning("following the %s failed (%s); authentication reads the "
                                "store; retrying in %.1fs", collection.name, problem, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_MAX_S)
                try:
                    revision = await self._load(collection)
                    break
                except StoreClosed:
                    return
                except Exception as exc:
                    problem = f"listing them: {type(exc).__name__}: {exc}"

    async def _heartbeat(self) -> None:
        """Confirm the store answers, every `heartbeat_s`. Returns when the store closes."""
        while True:
            started = time.monotonic()
            try:
                await self.store.revision()
            except StoreClosed:
                return
            except Exception as exc:
                if not self._stale_logged:
                    log.warning("the store did not answer (%s: %s); authentication reads the "
                                "store until it does", type(exc).__name__, exc)
                    self._stale_logged = True
            else:
                self._confirmed_at = started
                if self._stale_logged:
                    log.info("the store answers again; authentication uses the login cache")
                    self._stale_logged = False
            await asyncio.sleep(max(0.0, self.heartbeat_s - (time.monotonic() - started)))


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[Event]) -> AsyncIterator[None]:
    """Close the store's watch (an async generator) when following ends."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
