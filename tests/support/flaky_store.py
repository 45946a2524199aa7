"""A MemoryStore that can be made unreachable, for tests of what the server does when its store
fails: every call raises StoreUnavailable while `down` is set, open watches fail on their next
event while `watch_failures` > 0, and reads are counted (a cache must not make any)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from corral.store.base import Compare, Event, KeyValue, Op, StoreUnavailable
from corral.store.memory import MemoryStore

NAME = "memory://flaky"


class FlakyStore(MemoryStore):
    """MemoryStore with an off switch."""

    def __init__(self, *, history: int = 10_000) -> None:
        super().__init__(history=history)
        self.down = False
        self.watch_failures = 0
        self.reads = 0

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(f"the store ({NAME}) is unavailable: connection refused")

    def _check_up(self) -> None:
        if self.down:
            raise self._unavailable()

    async def get(self, key: str) -> KeyValue | None:
        self._check_up()
        self.reads += 1
        return await super().get(key)

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None
    ) -> tuple[list[KeyValue], int]:
        self._check_up()
        self.reads += 1
        return await super().range(prefix, limit=limit, start_after=start_after)

    async def put(
        self, key: str, value: bytes, *, expected_mod_revision: int | None = None, lease: int = 0
    ) -> int:
        self._check_up()
        return await super().put(key, value, expected_mod_revision=expected_mod_revision,
                                 lease=lease)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        self._check_up()
        return await super().delete(key, expected_mod_revision=expected_mod_revision)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        self._check_up()
        return await super().txn(compares, ops)

    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        self._check_up()
        return self._failing(super().watch(prefix, start_revision=start_revision))

    async def _failing(self, inner: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for event in inner:
            if self.watch_failures > 0:
                self.watch_failures -= 1
                raise self._unavailable()
            yield event
