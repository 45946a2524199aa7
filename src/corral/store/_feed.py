"""Watch machinery shared by the embedded backends: a watch is a cursor over the event history.

A watcher never has its own queue. It remembers the next revision it wants, asks the backend for
the events from there (`_events_from`), yields them, and then sleeps until the store revision moves
past what it has seen. History is the single source of events, so replay-then-follow can have
neither a gap nor a duplicate, and a watcher that falls behind the kept history gets `Compacted`
(as an etcd watch does) instead of growing an unbounded buffer.

A revision may hold several events (a `txn`, a lease's end). A history read always returns whole
revisions, and a watcher yields the events of one revision one after the other without waiting,
so a consumer that resumes from "last revision seen + 1" after a complete revision neither loses
nor repeats an event.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterable

from corral.store.base import Compacted, Event, Store, StoreError

#: History kept for watches, in revisions, unless the backend is told otherwise.
DEFAULT_HISTORY_REVISIONS = 10_000
#: Events one history read gathers before it stops at the end of a revision.
FETCH_BATCH = 512

#: The events of one revision, in op order (never empty).
Revision = tuple[Event, ...]


class StoreClosed(StoreError):
    """The store was closed; open a new one."""

    def __init__(self) -> None:
        super().__init__("the store is closed")


def validate_history(history: int) -> int:
    """`history` if it is a usable number of kept revisions, else ValueError."""
    if history < 1:
        raise ValueError(f"store history must be at least 1 revision, got {history}")
    return history


def scan_revisions(
    revisions: Iterable[Revision], prefix: str, limit: int, upto: int
) -> tuple[list[Event], int]:
    """Events under `prefix` from consecutive `revisions`, stopping after the first whole
    revision at which at least `limit` were gathered. Returns them and the last revision the scan
    covered (`upto` when it ran out of revisions first)."""
    found: list[Event] = []
    for events in revisions:
        for event in events:
            if event.kv.key.startswith(prefix):
                found.append(event)
        if len(found) >= limit:
            return found, events[0].kv.mod_revision
    return found, upto


def scan_recent(
    recent: deque[Revision], revision: int, prefix: str, limit: int, upto: int
) -> tuple[list[Event], int]:
    """`scan_revisions` over a deque of consecutive revisions, from `revision` (which must be
    the deque's first revision or later)."""
    skip = revision - recent[0][0].kv.mod_revision if recent else 0
    return scan_revisions(itertools.islice(recent, skip, None), prefix, limit, upto)


class WatchableStore(Store, abc.ABC):
    """A Store whose watches read the backend's history; backends keep `_rev` current and call
    `_committed()` after every write."""

    def __init__(self, history: int) -> None:
        self._history = validate_history(history)
        self._rev = 0
        self._closed = False
        self._changed: asyncio.Event | None = None

    # -- what the backend provides -------------------------------------------------------------

    @abc.abstractmethod
    def _events_from(self, revision: int, prefix: str, limit: int) -> tuple[list[Event], int]:
        """The events with key under `prefix` of the revisions from `revision` on, in order,
        made of whole revisions: the read may stop after the first revision at which `limit`
        events were gathered. Returns them and the last revision covered (every event under
        `prefix` up to it is in the list); that is the current revision when the read did not
        stop early. Only called when `revision` is kept and not beyond the current one."""

    # -- shared behaviour ----------------------------------------------------------------------

    def _oldest_kept(self) -> int:
        """The oldest revision a watch may still start from."""
        return max(1, self._rev - self._history + 1)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    def _committed(self) -> None:
        """Wake every watcher: the revision moved."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def _mark_closed(self) -> None:
        self._closed = True
        self._committed()

    def _wait_handle(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        """Events under `prefix` from `start_revision` (inclusive; None = after now). Raises
        Compacted right away when that revision is no longer kept, or later if the watcher falls
        more than the kept history behind. Ends when the store closes (never inside a
        revision)."""
        self._check_open()
        if start_revision is None:
            start = self._rev + 1
        else:
            start = max(start_revision, 1)
            if start < self._oldest_kept():
                raise Compacted(start_revision, self._oldest_kept())
        return self._follow(prefix, start)

    async def _follow(self, prefix: str, next_rev: int) -> AsyncIterator[Event]:
        while not self._closed:
            if next_rev <= self._rev:
                if next_rev < self._oldest_kept():
                    raise Compacted(next_rev, self._oldest_kept())
                events, covered = self._events_from(next_rev, prefix, FETCH_BATCH)
                next_rev = covered + 1
                current = 0
                for event in events:
                    if event.kv.mod_revision != current:
                        if self._closed:
                            return
                        current = event.kv.mod_revision
                    yield event
                continue
            await self._wait_handle().wait()
