"""Lease-based leader election on the Store interface (the shape of etcd's `concurrency`
election): one server of an HA install leads at a time and runs the duties that must run once.

Campaign: grant a lease of `ttl` seconds and create the election key, attached to it, only if it
is absent (create-if-absent). The server whose create succeeds leads; it renews the lease every
ttl/3 and watches the key. The others watch the key and campaign again as soon as it is deleted:
when the leader resigns (its lease is revoked on stop) or dies (its lease expires after at most
`ttl` seconds without renewal).

A leader stops leading, before anybody else can start, when it has not renewed its lease for
2/3 of the TTL (store unreachable, no quorum), when the lease is gone, or when the key stops
naming it. Every change is reported to `on_change(leading, detail)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.store.base import Compacted, CompareFailed, LeaseNotFound, Store, StoreError
from corral.tasks import cancel_and_wait

log = logging.getLogger("corral.server.election")

DEFAULT_TTL_SECONDS = 5
ELECTION_TTL_ENV = "CORRAL_ELECTION_TTL"
RETRY_SECONDS = 0.5  # between campaigns after a store error

Listener = Callable[[bool, str], None]


class LeadershipLost(Exception):
    """The leader can no longer be sure it leads; the message says why."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """Who campaigns: a name unique to one running server (shown in /healthz?verbose)."""

    identity: str

    def value(self) -> bytes:
        """The election key's value while this candidate leads."""
        return json.dumps({"holder": self.identity}, separators=(",", ":")).encode()


def holder_of(value: bytes) -> str:
    """The identity an election key's value names ("" when unreadable)."""
    try:
        data = json.loads(value)
    except ValueError:
        return ""
    holder = data.get("holder") if isinstance(data, dict) else None
    return holder if isinstance(holder, str) else ""


class Election:
    """One candidate's side of the election on `key`. `run()` campaigns until cancelled;
    `resign()` gives the lead away at once."""

    def __init__(
        self,
        store: Store,
        key: str,
        candidate: Candidate,
        *,
        ttl: int = DEFAULT_TTL_SECONDS,
        on_change: Listener | None = None,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"election TTL must be at least 1 second, got {ttl}")
        self.store = store
        self.key = key
        self.candidate = candidate
        self.ttl = ttl
        self.leader = ""  # who leads as last seen ("" = nobody known)
        self.leading = False
        self._on_change = on_change
        self._lease = 0
        self._task: asyncio.Task[None] | None = None

    # -- public -----------------------------------------------------------------------------

    def start(self) -> None:
        """Campaign in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"election {self.key}")

    async def run(self) -> None:
        """Campaign, lead, follow, campaign again: until cancelled."""
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except (StoreError, LeadershipLost, TimeoutError) as exc:
                self._step_down(str(exc) or type(exc).__name__)
                await self._forget_lease()
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:  # a bug must not end the election loop silently
                log.exception("election on %s failed; campaigning again", self.key)
                self._step_down("internal error")
                await self._forget_lease()
                await asyncio.sleep(RETRY_SECONDS)

    async def resign(self, timeout: float = 2.0) -> None:
        """Stop campaigning; a leader revokes its lease so another server takes over now."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        was_leading = self.leading
        self._step_down("resigned")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await self._forget_lease()
        if was_leading:
            log.info("resigned the lead of %s", self.key)

    # -- one round ----------------------------------------------------------------------------

    async def _round(self) -> None:
        """Campaign once: lead if the key is free, else follow until it is deleted."""
        current = await self.store.get(self.key)
        if current is not None:
            self.leader = holder_of(current.value)
            if self.leader == self.candidate.identity and current.lease:
                # our own key from a lease we no longer renew (e.g. after a store outage)
                with contextlib.suppress(StoreError):
                    await self.store.revoke_lease(current.lease)
                return
            await self._follow(current.mod_revision)
            return
        lease = await self.store.grant_lease(self.ttl)
        self._lease = lease
        started = time.monotonic()
        try:
            revision = await self.store.create(self.key, self.candidate.value(), lease=lease)
        except CompareFailed:
            await self._forget_lease()
            return
        await self._lead(lease, revision, started)

    async def _follow(self, seen_revision: int) -> None:
        """Wait until the key changes after `seen_revision`; return when it is deleted."""
        watch = self.store.watch(self.key, start_revision=seen_revision + 1)
        try:
            async for event in watch:
                if event.kv.key != self.key:
                    continue
                if event.type == "delete":
                    self.leader = ""
                    return
                self.leader = holder_of(event.kv.value)
        finally:
            await _close(watch)
        raise StoreError("the store closed the watch on the election key")

    async def _lead(self, lease: int, revision: int, renewed_at: float) -> None:
        """Lead until the lease cannot be renewed or the key stops naming us."""
        self.leader = self.candidate.identity
        self._set_leading(True, f"lease {lease:x}, TTL {self.ttl}s")
        watcher = asyncio.create_task(self._watch_own_key(revision))
        try:
            while True:
                done, _ = await asyncio.wait({watcher}, timeout=self.ttl / 3)
                if done:
                    watcher.result()  # raises LeadershipLost
                renewed_at = await self._renew(lease, renewed_at)
        finally:
            await cancel_and_wait([watcher])

    async def _renew(self, lease: int, renewed_at: float) -> float:
        """Keep the lease alive; the time the successful renewal was sent, or LeadershipLost
        when the lease may already have expired for the others."""
        sent = time.monotonic()
        deadline = renewed_at + self.ttl * 2 / 3
        try:
            async with asyncio.timeout(max(0.1, deadline - sent)):
                ttl = await self.store.keep_alive(lease)
        except LeaseNotFound:
            raise LeadershipLost("the election lease expired") from None
        except (StoreError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else "no answer in time"
                raise LeadershipLost(
                    f"the lease could not be renewed for {self.ttl * 2 / 3:.1f}s: {why}"
                ) from None
            return renewed_at
        if ttl > 0 and ttl != self.ttl:
            self.ttl = ttl  # the backend rounded the TTL up
        return sent

    async def _watch_own_key(self, revision: int) -> None:
        """Raise LeadershipLost when the election key is deleted or names someone else. A
        watch that fails is opened again after what it delivered (a store error alone does not
        end the lead: the lease renewals decide that)."""
        next_revision = revision + 1
        while True:
            watch = self.store.watch(self.key, start_revision=next_revision)
            try:
                async for event in watch:
                    next_revision = event.kv.mod_revision + 1
                    if event.kv.key == self.key:
                        self._check_holder(None if event.type == "delete" else event.kv.value)
                raise LeadershipLost("the store closed the watch on the election key")
            except Compacted:
                kvs, at = await self.store.range(self.key, limit=1)
                found = next((kv for kv in kvs if kv.key == self.key), None)
                self._check_holder(None if found is None else found.value)
                next_revision = at + 1
            except LeadershipLost:
                raise
            except StoreError as exc:
                log.info("watching the election key failed (%s); watching again", exc)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                await _close(watch)

    def _check_holder(self, value: bytes | None) -> None:
        """LeadershipLost unless `value` (None: the key is gone) names this candidate."""
        if value is None:
            raise LeadershipLost("the election key was deleted")
        holder = holder_of(value)
        if holder != self.candidate.identity:
            self.leader = holder
            raise LeadershipLost(f"the election key now names {holder}")

    # -- state ------------------------------------------------------------------------------

    def _set_leading(self, leading: bool, detail: str) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        if self._on_change is not None:
            try:
                self._on_change(leading, detail)
            except Exception:
                log.exception("election listener failed")

    def _step_down(self, reason: str) -> None:
        if self.leading:
            self.leader = ""
        self._set_leading(False, reason)

    async def _forget_lease(self) -> None:
        lease, self._lease = self._lease, 0
        if lease:
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(self.ttl):
                    await self.store.revoke_lease(lease)


async def _close(watch: object) -> None:
    aclose = getattr(watch, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
