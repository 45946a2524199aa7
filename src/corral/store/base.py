"""The store interface: a revisioned key/value store with watch, shaped like etcd's v3 API.

Every write bumps one global revision. Keys are `/`-separated strings; values are bytes (the
server stores JSON). Backends: `sqlite` (embedded default), `memory` (tests), `etcd` (HA, later).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # number of writes since the key was (re)created; 1 after create


@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by a watch. For `delete`, `kv.value` is b"" and `kv.mod_revision` is the
    revision of the deletion; `prev_kv` is the value just before the change (None on create)."""

    type: Literal["put", "delete"]
    kv: KeyValue
    prev_kv: KeyValue | None


class StoreError(Exception):
    """Base of the store's errors."""


class CompareFailed(StoreError):
    """A compare-on-revision (or create-if-absent) did not hold; nothing was written."""


class Compacted(StoreError):
    """A watch asked to start from a revision older than the store still remembers."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} is compacted (oldest kept: {compact_revision}); "
            "list again and watch from the list's revision"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class Store(abc.ABC):
    """What every backend offers. All methods are safe to call concurrently from one loop."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The current value of `key`, or None."""

    @abc.abstractmethod
    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None
    ) -> tuple[list[KeyValue], int]:
        """Keys starting with `prefix` in key order (after `start_after` when given; at most
        `limit` when > 0) and the store revision the answer was read at."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, *, expected_mod_revision: int | None = None) -> int:
        """Write `key`; with `expected_mod_revision`, only if the key's mod_revision is that
        (0 means "must not exist"), else raise CompareFailed. Returns the new store revision."""

    async def create(self, key: str, value: bytes) -> int:
        """Write `key` only if it does not exist (raises CompareFailed otherwise)."""
        return await self.put(key, value, expected_mod_revision=0)

    @abc.abstractmethod
    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        """Delete `key` (with the same compare rule as `put`). Returns the new store revision,
        or None when the key did not exist."""

    @abc.abstractmethod
    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        """Events for keys under `prefix`, in revision order, from `start_revision` (inclusive;
        None = only changes after the call). Raises Compacted if that revision is forgotten.
        The iterator ends when the store closes."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """The current store revision (0 for an empty, never-written store)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources; open watches end."""
