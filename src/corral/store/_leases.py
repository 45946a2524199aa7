"""Lease bookkeeping shared by the embedded backends: live leases, the keys attached to each,
and one expiry timer on the event loop for the soonest deadline (not one per lease).

Deadlines live only in memory (monotonic clock): a backend that persists leases gives each its
full TTL again when it reopens, as etcd does after a leader change. A lease whose deadline has
passed is dead at once for `alive`/`renew`, even before its keys are deleted; the backend deletes
them through the `end` callback (all keys of one lease at one revision), from the timer or from
`expire_due`, which backends call before each write.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from corral.store.base import Event, LeaseNotFound, StoreError

log = logging.getLogger(__name__)

#: Seconds before ending a lease is tried again after the store refused the write.
RETRY_SECONDS = 1.0


@dataclass(slots=True)
class Lease:
    """One live lease: its TTL, its current deadline and the keys attached to it."""

    id: int
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


def validate_ttl(ttl: int) -> int:
    """`ttl` if it is a usable lease TTL (whole seconds, at least 1), else ValueError."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise ValueError(f"lease TTL must be a whole number of seconds >= 1, got {ttl!r}")
    return ttl


class LeaseTable:
    """The live leases of one store. `end(lease_id)` is the backend's "delete this lease's keys
    at one revision and forget the lease" (it calls `remove` once that is committed)."""

    def __init__(self, end: Callable[[int], None]) -> None:
        self._end = end
        self._leases: dict[int, Lease] = {}
        # (time, lease id): a deadline or a retry. An entry is stale once its lease is gone or
        # was renewed past it (a renewal pushes a new entry instead of moving the old one).
        self._heap: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- leases --------------------------------------------------------------------------------

    def new_id(self) -> int:
        """An unused lease id (> 0, fits etcd's int64)."""
        while True:
            lease_id = secrets.randbits(63)
            if lease_id and lease_id not in self._leases:
                return lease_id

    def add(self, lease_id: int, ttl: int, keys: Iterable[str] = ()) -> None:
        """Track `lease_id` (granted now, or loaded on reopen) with a deadline `ttl` from now."""
        lease = Lease(lease_id, ttl, time.monotonic() + ttl, set(keys))
        self._leases[lease_id] = lease
        self._push(lease.deadline, lease_id)
        self.schedule()

    def alive(self, lease_id: int) -> bool:
        """True while `lease_id` exists and its deadline has not passed."""
        lease = self._leases.get(lease_id)
        return lease is not None and lease.deadline > time.monotonic()

    def renew(self, lease_id: int) -> int:
        """Move the deadline of `lease_id` to a full TTL from now; returns the TTL.
        LeaseNotFound when it is gone or past its deadline."""
        if not self.alive(lease_id):
            raise LeaseNotFound(lease_id)
        lease = self._leases[lease_id]
        lease.deadline = time.monotonic() + lease.ttl
        self._push(lease.deadline, lease_id)
        return lease.ttl

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def keys(self, lease_id: int) -> list[str]:
        """The keys attached to `lease_id`, sorted (empty when it is unknown)."""
        lease = self._leases.get(lease_id)
        return sorted(lease.keys) if lease is not None else []

    def remove(self, lease_id: int) -> None:
        """Forget `lease_id` (its keys were deleted); its heap entries become stale."""
        self._leases.pop(lease_id, None)

    def apply(self, events: Iterable[Event]) -> None:
        """Follow committed events: a write detaches a key from its previous lease and a put
        attaches it to the lease it names."""
        for event in events:
            prev = event.prev_kv
            if prev is not None and prev.lease:
                old = self._leases.get(prev.lease)
                if old is not None:
                    old.keys.discard(prev.key)
            if event.type == "put" and event.kv.lease:
                new = self._leases.get(event.kv.lease)
                if new is not None:
                    new.keys.add(event.kv.key)

    # -- expiry --------------------------------------------------------------------------------

    def expire_due(self) -> None:
        """End every lease whose deadline has passed. A write the store refuses is logged and
        tried again after RETRY_SECONDS; it never raises."""
        now = time.monotonic()
        due: list[int] = []
        while self._heap and self._heap[0][0] <= now:
            _, lease_id = heapq.heappop(self._heap)
            lease = self._leases.get(lease_id)
            if lease is not None and lease.deadline <= now and lease_id not in due:
                due.append(lease_id)
        for lease_id in due:
            try:
                self._end(lease_id)
            except StoreError as exc:
                log.warning("ending expired lease %x failed, retrying: %s", lease_id, exc)
                self._push(now + RETRY_SECONDS, lease_id)
        self.schedule()

    def arm(self) -> None:
        """Make sure the timer runs on the current loop (cheap; backends call it on every use,
        since a store may be opened before its loop runs)."""
        if self._heap and (self._timer is None or self._timer_loop is not _running_loop()):
            self.schedule()

    def schedule(self) -> None:
        """Point the one timer at the soonest live entry (no-op without a running loop)."""
        self._drop_stale_top()
        if self._closed or not self._heap:
            self._cancel_timer()
            return
        loop = _running_loop()
        if loop is None:
            return
        when = self._heap[0][0]
        if self._timer is not None and self._timer_loop is loop and self._timer_at <= when:
            return  # it fires no later than needed; firing early just reschedules
        self._cancel_timer()
        self._timer = loop.call_later(max(0.0, when - time.monotonic()), self._fire)
        self._timer_at, self._timer_loop = when, loop

    def close(self) -> None:
        """Stop the timer for good (leases of a closed store do not expire)."""
        self._closed = True
        self._cancel_timer()

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if not self._closed:
            self.expire_due()

    def _push(self, when: float, lease_id: int) -> None:
        heapq.heappush(self._heap, (when, lease_id))
        if len(self._heap) > 2 * len(self._leases) + 64:  # many renewals: drop stale entries
            self._heap = [(t, i) for t, i in self._heap if not self._stale(t, i)]
            heapq.heapify(self._heap)

    def _stale(self, when: float, lease_id: int) -> bool:
        lease = self._leases.get(lease_id)
        return lease is None or lease.deadline > when

    def _drop_stale_top(self) -> None:
        while self._heap and self._stale(*self._heap[0]):
            heapq.heappop(self._heap)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at, self._timer_loop = None, math.inf, None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
