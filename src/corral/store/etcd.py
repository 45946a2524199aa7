"""The etcd backend: the Store interface on etcd's v3 gRPC API, with mutual TLS and failover.

`connect_etcd(options)` checks the TLS files, reaches the cluster and returns an `EtcdStore`.
Revisions are etcd's own. Requests go to one endpoint; when it fails the store moves to the next
one and retries what is safe to retry: reads, and writes that certainly were not applied (or
whose compares tell whether they were). Everything else raises StoreUnavailable within
`request_timeout`. Watches resume on another endpoint after the revision they last delivered.
The rules are in docs/store.md, "## etcd".
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aetcd.rpc as rpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from corral.store._etcd_channel import REQUIRE_LEADER, EndpointPool
from corral.store._etcd_codec import ALL_KEYS, KeyCodec
from corral.store._etcd_connect import open_pool
from corral.store._etcd_errors import EtcdConfigError, EtcdTLSError, EtcdUnreachable
from corral.store._etcd_requests import Answer, Requests, Retry
from corral.store._etcd_status import cluster_status
from corral.store._etcd_txn import (
    applied_at,
    checkable,
    failure_reads,
    first_failed,
    read_keys,
    txn_request,
)
from corral.store._etcd_watch import WatchLink, follow
from corral.store._feed import DEFAULT_HISTORY_REVISIONS, StoreClosed, validate_history
from corral.store._rules import check_ops, single_key_compares
from corral.store.base import (
    Compare,
    Delete,
    Event,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
    Store,
    StoreError,
    StoreStatus,
    StoreUnavailable,
)

__all__ = [
    "EtcdConfigError",
    "EtcdOptions",
    "EtcdStore",
    "EtcdTLSError",
    "EtcdUnreachable",
    "connect_etcd",
]

#: How often the store compacts etcd's history down to its `history` revisions, in seconds.
COMPACT_INTERVAL = 60.0
#: Timeout of each member's status question in status(), in seconds.
STATUS_TIMEOUT = 1.0


@dataclass(frozen=True)
class EtcdOptions:
    """How to reach an etcd cluster: its client URLs, the TLS files, a key prefix, timeouts."""

    endpoints: tuple[str, ...]  # "https://127.0.1.1:2379", ...
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    prefix: str = ""  # every key lives under this prefix (a namespace); "" = none
    dial_timeout: float = 5.0
    request_timeout: float = 5.0


class EtcdStore(Store):
    """A Store on an etcd cluster (make one with `connect_etcd`)."""

    def __init__(self, options: EtcdOptions, pool: EndpointPool, history: int) -> None:
        self._options = options
        self._pool = pool
        self._codec = KeyCodec(options.prefix)
        self._history = validate_history(history)
        self._last_rev = 0
        self._compacted = 0
        self._closed = False
        self._closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._link = WatchLink(
            pool, self._codec, lambda: self._closed, self._closing, self._saw, set()
        )
        self._compactor: asyncio.Task[None] | None = None
        self._requests = Requests(
            pool, self.name, options.request_timeout, lambda: self._closed, self._saw
        )

    @property
    def name(self) -> str:
        """How messages name this store: `etcd (endpoint, ...)`."""
        return f"etcd ({', '.join(e.url for e in self._pool.endpoints)})"

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to now."""
        return self._pool.current.url

    def _saw(self, revision: int) -> None:
        self._last_rev = max(self._last_rev, revision)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    def start_compactor(self) -> None:
        """Compact etcd's history to the last `history` revisions every COMPACT_INTERVAL."""
        if self._compactor is None:
            self._compactor = asyncio.get_running_loop().create_task(self._compact_loop())

    async def _compact_loop(self) -> None:
        while not self._closed:
            await asyncio.wait({self._closing}, timeout=COMPACT_INTERVAL)
            if self._closed:
                return
            target = self._last_rev - self._history
            if target > self._compacted:
                with contextlib.suppress(StoreError):  # tried again next interval
                    await self.compact(target)

    async def _kv(self, what: str, method: str, request: Any, retry: Retry) -> Any:
        async def attempt(channel: grpc.aio.Channel, timeout: float, uncertain: bool) -> Any:
            stub = rpc.KVStub(channel)
            return await getattr(stub, method)(request, timeout=timeout, metadata=REQUIRE_LEADER)

        try:
            return await self._requests.run(what, attempt, retry)
        except Answer as answer:
            if "lease not found" in answer.failure.detail:
                raise LeaseNotFound(_lease_of(request)) from None
            raise self._requests.answer_error(what, answer) from None

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        request = rpc.RangeRequest(key=self._codec.key(key))
        response = await self._kv(f"get {key!r}", "Range", request, "always")
        return self._codec.kv(response.kvs[0]) if response.kvs else None

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None
    ) -> tuple[list[KeyValue], int]:
        start, end = self._codec.span(prefix)
        if start_after is not None and start_after >= prefix:
            start = self._codec.key(start_after) + b"\x00"
        request = rpc.RangeRequest(key=start, range_end=end, limit=max(limit, 0))
        response = await self._kv(f"range {prefix!r}", "Range", request, "always")
        return [self._codec.kv(kv) for kv in response.kvs], int(response.header.revision)

    async def revision(self) -> int:
        request = rpc.RangeRequest(key=ALL_KEYS, keys_only=True)
        response = await self._kv("revision", "Range", request, "always")
        return int(response.header.revision)

    # -- writes --------------------------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, expected_mod_revision: int | None = None, lease: int = 0
    ) -> int:
        if expected_mod_revision is not None:
            ops: list[Op] = [Put(key, value, lease)]
            revision, _ = await self._txn(single_key_compares(key, expected_mod_revision), ops)
            return revision
        request = rpc.PutRequest(key=self._codec.key(key), value=bytes(value), lease=lease)
        response = await self._kv(f"put {key!r}", "Put", request, "never")
        return int(response.header.revision)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        if expected_mod_revision is not None:
            compares = single_key_compares(key, expected_mod_revision)
            revision, changed = await self._txn(compares, [Delete(key)])
            return revision if changed else None
        request = rpc.DeleteRangeRequest(key=self._codec.key(key))
        response = await self._kv(f"delete {key!r}", "DeleteRange", request, "never")
        return int(response.header.revision) if response.deleted else None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        check_ops(ops)
        if not compares and not ops:
            return await self.revision()
        revision, _ = await self._txn(list(compares), list(ops))
        return revision

    async def _txn(self, compares: list[Compare], ops: list[Op]) -> tuple[int, bool]:
        """Run the txn; (its revision, whether it changed anything). CompareFailed when a
        compare does not hold (and the first try is not shown to have been applied)."""
        request = txn_request(self._codec, compares, ops)
        keys = read_keys(compares, ops)
        after = self._last_rev
        retried = False

        async def attempt(channel: grpc.aio.Channel, timeout: float, uncertain: bool) -> Any:
            nonlocal retried
            retried = uncertain
            return await rpc.KVStub(channel).Txn(request, timeout=timeout, metadata=REQUIRE_LEADER)

        what = f"txn on {', '.join(repr(k) for k in keys)}"
        retry: Retry = "checked" if checkable(compares, ops) else "never"
        try:
            response = await self._requests.run(what, attempt, retry)
        except Answer as answer:
            if "lease not found" in answer.failure.detail:
                leases = [op.lease for op in ops if isinstance(op, Put) and op.lease]
                raise LeaseNotFound(leases[0] if leases else 0) from None
            raise self._requests.answer_error(what, answer) from None
        revision = int(response.header.revision)
        if response.succeeded:
            return revision, _changed(response, ops)
        current = failure_reads(self._codec, keys, response)
        if retried:
            applied = applied_at(ops, current, after)
            if applied is not None:
                return (applied or revision), True
            raise StoreUnavailable(
                f"{self.name}: {what}: the first try's outcome was lost and its compare no "
                "longer holds; it may or may not have been applied"
            )
        raise first_failed(compares, current)

    # -- leases --------------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        if ttl < 1:
            raise ValueError(f"a lease TTL must be at least 1 second, got {ttl}")
        lease = secrets.randbits(62) + 1  # our own id, so a lost grant can be recognised

        async def attempt(channel: grpc.aio.Channel, timeout: float, uncertain: bool) -> Any:
            nonlocal lease
            stub = rpc.LeaseStub(channel)
            try:
                return await stub.LeaseGrant(
                    rpc.LeaseGrantRequest(TTL=ttl, ID=lease),
                    timeout=timeout,
                    metadata=REQUIRE_LEADER,
                )
            except grpc.aio.AioRpcError as error:
                if "lease already exists" not in str(error.details()):
                    raise
                if uncertain:
                    return None  # our lost first try made it
                lease = secrets.randbits(62) + 1
                return await stub.LeaseGrant(
                    rpc.LeaseGrantRequest(TTL=ttl, ID=lease),
                    timeout=timeout,
                    metadata=REQUIRE_LEADER,
                )

        try:
            response = await self._requests.run(f"grant a {ttl}s lease", attempt, "checked")
        except Answer as answer:
            raise self._requests.answer_error("grant lease", answer) from None
        if response is not None and response.error:
            raise StoreError(f"{self.name}: grant lease: {response.error}")
        return lease

    async def keep_alive(self, lease: int) -> int:
        async def attempt(channel: grpc.aio.Channel, timeout: float, uncertain: bool) -> Any:
            call = rpc.LeaseStub(channel).LeaseKeepAlive(timeout=timeout, metadata=REQUIRE_LEADER)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
                answer = await call.read()
                await call.done_writing()
            finally:
                call.cancel()
            if answer is grpc.aio.EOF:
                raise StoreError("etcd closed the keep-alive stream without an answer")
            return answer

        try:
            response = await self._requests.run(f"keep lease {lease:x} alive", attempt, "always")
        except Answer as answer:
            raise self._requests.answer_error("keep alive", answer) from None
        if int(response.TTL) <= 0:
            raise LeaseNotFound(lease)
        return int(response.TTL)

    async def revoke_lease(self, lease: int) -> None:
        async def attempt(channel: grpc.aio.Channel, timeout: float, uncertain: bool) -> Any:
            return await rpc.LeaseStub(channel).LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease), timeout=timeout, metadata=REQUIRE_LEADER
            )

        try:
            await self._requests.run(f"revoke lease {lease:x}", attempt, "always")
        except Answer as answer:
            if "lease not found" not in answer.failure.detail:
                raise self._requests.answer_error("revoke lease", answer) from None

    # -- compaction, status, watch, close ------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Make etcd forget the history before `revision` (watches from earlier raise
        Compacted). Compacting an already compacted revision does nothing."""

        async def attempt(channel: grpc.aio.Channel, timeout: float, uncertain: bool) -> Any:
            return await rpc.KVStub(channel).Compact(
                rpc.CompactionRequest(revision=revision), timeout=timeout, metadata=REQUIRE_LEADER
            )

        try:
            await self._requests.run(f"compact to {revision}", attempt, "always")
        except Answer as answer:
            if "compacted" not in answer.failure.detail:
                raise self._requests.answer_error("compact", answer) from None
        self._compacted = max(self._compacted, revision)

    async def status(self) -> StoreStatus:
        if self._closed:
            return StoreStatus("etcd", self._pool.current.url, False, detail="the store is closed")
        return await cluster_status(self._pool, min(STATUS_TIMEOUT, self._options.dial_timeout))

    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        """Events under `prefix` from `start_revision` (inclusive). Without one, from the
        revision after the last one this store has seen (so every write acknowledged to this
        store before the call is left out, every later one is in). A compacted start revision
        raises Compacted at the first `anext`."""
        self._check_open()
        key, end = self._codec.span(prefix)
        if start_revision is None:
            return follow(self._link, key, end, self._last_rev + 1, from_now=True)
        return follow(self._link, key, end, max(start_revision, 1), from_now=False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._closing.done():
            self._closing.set_result(None)
        if self._compactor is not None:
            self._compactor.cancel()
        for call in list(self._link.calls):
            call.cancel()
        await self._pool.close()


def _lease_of(request: Any) -> int:
    return int(getattr(request, "lease", 0) or 0)


def _changed(response: Any, ops: Sequence[Op]) -> bool:
    """Whether a succeeded txn changed a key (a Put always does; a Delete when it found one)."""
    for op, answer in zip(ops, response.responses, strict=False):
        if isinstance(op, Put) or int(answer.response_delete_range.deleted):
            return True
    return False


async def connect_etcd(
    options: EtcdOptions, *, history: int = DEFAULT_HISTORY_REVISIONS
) -> EtcdStore:
    """An EtcdStore on the cluster `options` names, once an endpoint has answered over TLS.
    EtcdConfigError for bad options or TLS files (its `option` names the field), EtcdTLSError
    when the TLS handshake fails, EtcdUnreachable when no endpoint answers."""
    validate_history(history)
    pool = await open_pool(options)
    store = EtcdStore(options, pool.pool, history)
    store._saw(pool.revision)
    store.start_compactor()
    return store
