"""In-memory store for tests: the same semantics as the sqlite backend, nothing on disk."""

from __future__ import annotations

import bisect
import itertools
from collections import deque

from corral.store._feed import DEFAULT_HISTORY_REVISIONS, WatchableStore
from corral.store._rules import check_compare, next_kv
from corral.store.base import Event, KeyValue


class MemoryStore(WatchableStore):
    """A dict, a sorted key list and a bounded event history."""

    def __init__(self, *, history: int = DEFAULT_HISTORY_REVISIONS) -> None:
        super().__init__(history)
        self._kvs: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted
        self._events: deque[Event] = deque(maxlen=self._history)

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self._kvs.get(key)

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None
    ) -> tuple[list[KeyValue], int]:
        self._check_open()
        if start_after is not None and start_after >= prefix:
            index = bisect.bisect_right(self._keys, start_after)
        else:
            index = bisect.bisect_left(self._keys, prefix)
        found: list[KeyValue] = []
        for key in self._keys[index:]:
            if not key.startswith(prefix) or (limit > 0 and len(found) >= limit):
                break
            found.append(self._kvs[key])
        return found, self._rev

    async def put(self, key: str, value: bytes, *, expected_mod_revision: int | None = None) -> int:
        self._check_open()
        prev = self._kvs.get(key)
        check_compare(key, prev, expected_mod_revision)
        revision = self._rev + 1
        kv = next_kv(key, bytes(value), prev, revision)
        if prev is None:
            bisect.insort(self._keys, key)
        self._kvs[key] = kv
        self._record(Event("put", kv, prev))
        return revision

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        self._check_open()
        prev = self._kvs.get(key)
        check_compare(key, prev, expected_mod_revision)
        if prev is None:
            return None
        revision = self._rev + 1
        del self._kvs[key]
        self._keys.pop(bisect.bisect_left(self._keys, key))
        self._record(Event("delete", KeyValue(key, b"", prev.create_revision, revision, 0), prev))
        return revision

    async def revision(self) -> int:
        self._check_open()
        return self._rev

    async def close(self) -> None:
        self._mark_closed()

    def _record(self, event: Event) -> None:
        self._rev = event.kv.mod_revision
        self._events.append(event)
        self._committed()

    def _events_from(self, revision: int, prefix: str, limit: int) -> list[Event]:
        if not self._events:
            return []
        skip = max(0, revision - self._events[0].kv.mod_revision)
        found: list[Event] = []
        for event in itertools.islice(self._events, skip, None):
            if event.kv.key.startswith(prefix):
                found.append(event)
                if len(found) >= limit:
                    break
        return found
