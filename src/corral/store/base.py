"""The store interface: a revisioned key/value store with watch, transactions and leases, shaped
like etcd's v3 API.

Every write (a `put`, a `delete` of a present key, or a `txn` that changes anything) bumps one
global revision; all the changes of one `txn` share that revision, and a watch delivers them
together, in the order of the txn's operations. Keys are `/`-separated strings; values are bytes
(the server stores JSON). A key written with a lease is deleted (a `delete` event, like any other)
when the lease expires or is revoked. Backends: `sqlite` (embedded default), `memory` (tests),
`etcd` (HA).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
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
    lease: int = 0  # the lease the key is attached to; 0 = none


@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by a watch. For `delete`, `kv.value` is b"" and `kv.mod_revision` is the
    revision of the deletion; `prev_kv` is the value just before the change (None on create)."""

    type: Literal["put", "delete"]
    kv: KeyValue
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction's condition: `key` is at `mod_revision` (0 means "does not exist")."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """A transaction's write of `key`, attached to `lease` when it is not 0 (a put without a
    lease detaches a key from the lease it had, as in etcd)."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """A transaction's deletion of `key` (nothing happens when it is absent)."""

    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member of the store's cluster as the backend last saw it."""

    name: str
    endpoint: str
    healthy: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What `/healthz?verbose` reports about the store: the backend, the endpoint in use, and
    (for a cluster) each member's health. `healthy` is False when writes cannot succeed."""

    backend: str
    endpoint: str
    healthy: bool
    members: tuple[MemberStatus, ...] = ()
    detail: str = ""


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or has no quorum; the message names the store. Callers
    answer 503 and may retry later: nothing is known to have been written."""


class LeaseNotFound(StoreError):
    """The lease expired or was revoked (its keys are gone or going)."""

    def __init__(self, lease: int) -> None:
        super().__init__(f"lease {lease:x} does not exist (expired or revoked)")
        self.lease = lease


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
    async def put(
        self, key: str, value: bytes, *, expected_mod_revision: int | None = None, lease: int = 0
    ) -> int:
        """Write `key`; with `expected_mod_revision`, only if the key's mod_revision is that
        (0 means "must not exist"), else raise CompareFailed. With `lease`, the key goes when
        the lease does (LeaseNotFound if it is already gone). Returns the new store revision."""

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write `key` only if it does not exist (raises CompareFailed otherwise)."""
        return await self.put(key, value, expected_mod_revision=0, lease=lease)

    @abc.abstractmethod
    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        """Delete `key` (with the same compare rule as `put`). Returns the new store revision,
        or None when the key did not exist."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        """Atomically: when every compare holds, apply `ops` at one new revision (their events
        share it, in op order) and return it; otherwise write nothing and raise CompareFailed
        naming the first compare that failed. A txn whose ops change nothing (only deletes of
        absent keys, or no ops) returns the current revision without bumping it. A key may
        appear in at most one op (ValueError otherwise), as in etcd."""

    @abc.abstractmethod
    async def grant_lease(self, ttl: int) -> int:
        """A new lease of `ttl` whole seconds (>= 1, else ValueError; a backend may round a
        short TTL up, as etcd does); returns its id (> 0). Until it is renewed with
        `keep_alive`, the lease expires after its TTL and its keys are deleted."""

    @abc.abstractmethod
    async def keep_alive(self, lease: int) -> int:
        """Renew `lease` to its full TTL; returns that TTL in seconds. LeaseNotFound when it
        has expired or was revoked."""

    @abc.abstractmethod
    async def revoke_lease(self, lease: int) -> None:
        """End `lease` now: its keys are deleted at one revision, a delete event each (no
        revision when it has no keys). Revoking a lease that is already gone does nothing."""

    @abc.abstractmethod
    async def status(self) -> StoreStatus:
        """The backend, the endpoint in use and the members' health (never raises for an
        unreachable store: that is reported as unhealthy)."""

    @abc.abstractmethod
    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        """Events for keys under `prefix`, in revision order, from `start_revision` (inclusive;
        None = only changes after the call). Raises Compacted if that revision is forgotten.
        The events of one revision come one after another, in op order, never split by the end
        of the iterator; a consumer that saw all of revision R resumes from R + 1. The iterator
        ends when the store closes."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """The current store revision (0 for an empty, never-written store)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources; open watches end. Closing twice is harmless."""
