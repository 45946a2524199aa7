"""Watch machinery shared by the backends: a watch is a cursor over the event history.

A watcher never has its own queue. It remembers the next revision it wants, asks the backend for
the events from there (`_events_from`), yields them, and then sleeps until the store revision moves
past what it has seen. History is the single source of events, so replay-then-follow can have
neither a gap nor a duplicate, and a watcher that falls behind the kept history gets `Compacted`
(as an etcd watch does) instead of growing an unbounded buffer.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator

from corral.store.base import Compacted, Event, Store, StoreError

#: History kept for watches, in revisions, unless the backend is told otherwise.
DEFAULT_HISTORY_REVISIONS = 10_000
#: Most events one history read hands a watcher before it yields them.
FETCH_BATCH = 512


class StoreClosed(StoreError):
    """The store was closed; open a new one."""

    def __init__(self) -> None:
        super().__init__("the store is closed")


def validate_history(history: int) -> int:
    """`history` if it is a usable number of kept revisions, else ValueError."""
    if history < 1:
        raise ValueError(f"store history must be at least 1 revision, got {history}")
    return history


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
    def _events_from(self, revision: int, prefix: str, limit: int) -> list[Event]:
        """Up to `limit` events with revision >= `revision` and key under `prefix`, in order,
        among the revisions <= the current one. Only called when `revision` is still kept."""

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
        more than the kept history behind. Ends when the store closes."""
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
                upto = self._rev
                events = self._events_from(next_rev, prefix, FETCH_BATCH)
                if len(events) < FETCH_BATCH:
                    next_rev = upto + 1  # nothing else under prefix up to `upto`
                for event in events:
                    next_rev = max(next_rev, event.kv.mod_revision + 1)
                    yield event
                    if self._closed:
                        return
                continue
            await self._wait_handle().wait()
