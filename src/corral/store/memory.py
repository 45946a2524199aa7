"""In-memory store for tests: the same semantics as the sqlite backend, nothing on disk."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

from corral.store._feed import DEFAULT_HISTORY_REVISIONS, Revision, WatchableStore, scan_recent
from corral.store._leases import LeaseTable, validate_ttl
from corral.store._rules import plan_txn, single_key_compares
from corral.store.base import Compare, Delete, Event, KeyValue, Op, Put, StoreStatus


class MemoryStore(WatchableStore):
    """A dict, a sorted key list, a bounded history of revisions and a lease table."""

    def __init__(self, *, history: int = DEFAULT_HISTORY_REVISIONS) -> None:
        super().__init__(history)
        self._kvs: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted
        self._revisions: deque[Revision] = deque(maxlen=self._history)
        self._leases = LeaseTable(self._end_lease)

    def _check_open(self) -> None:
        super()._check_open()
        self._leases.arm()

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

    async def put(
        self, key: str, value: bytes, *, expected_mod_revision: int | None = None, lease: int = 0
    ) -> int:
        self._check_open()
        self._write(single_key_compares(key, expected_mod_revision), [Put(key, value, lease)])
        return self._rev

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        self._check_open()
        events = self._write(single_key_compares(key, expected_mod_revision), [Delete(key)])
        return self._rev if events else None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        self._check_open()
        self._write(compares, ops)
        return self._rev

    async def grant_lease(self, ttl: int) -> int:
        self._check_open()
        validate_ttl(ttl)
        self._leases.expire_due()
        lease_id = self._leases.new_id()
        self._leases.add(lease_id, ttl)
        return lease_id

    async def keep_alive(self, lease: int) -> int:
        self._check_open()
        self._leases.expire_due()
        return self._leases.renew(lease)

    async def revoke_lease(self, lease: int) -> None:
        self._check_open()
        self._leases.expire_due()
        if lease in self._leases:
            self._end_lease(lease)

    async def status(self) -> StoreStatus:
        if self._closed:
            return StoreStatus("memory", "memory://", False, detail="the store is closed")
        return StoreStatus("memory", "memory://", True)

    async def revision(self) -> int:
        self._check_open()
        return self._rev

    async def close(self) -> None:
        self._leases.close()
        self._mark_closed()

    # -- writing -------------------------------------------------------------------------------

    def _write(self, compares: Sequence[Compare], ops: Sequence[Op]) -> list[Event]:
        """Plan and apply one txn (synchronously, so nothing interleaves); [] = no change."""
        self._leases.expire_due()
        events = plan_txn(compares, ops, self._rev + 1, self._kvs.get, self._leases.alive)
        if events:
            self._apply(events)
        return events

    def _end_lease(self, lease: int) -> None:
        """Delete the keys of `lease` at one revision and forget it."""
        ops = [Delete(key) for key in self._leases.keys(lease)]
        events = plan_txn([], ops, self._rev + 1, self._kvs.get, self._leases.alive)
        if events:
            self._apply(events)
        self._leases.remove(lease)

    def _apply(self, events: list[Event]) -> None:
        for event in events:
            key = event.kv.key
            if event.type == "put":
                if event.prev_kv is None:
                    bisect.insort(self._keys, key)
                self._kvs[key] = event.kv
            else:
                del self._kvs[key]
                self._keys.pop(bisect.bisect_left(self._keys, key))
        self._leases.apply(events)
        self._rev = events[0].kv.mod_revision
        self._revisions.append(tuple(events))
        self._committed()

    def _events_from(self, revision: int, prefix: str, limit: int) -> tuple[list[Event], int]:
        return scan_recent(self._revisions, revision, prefix, limit, self._rev)
