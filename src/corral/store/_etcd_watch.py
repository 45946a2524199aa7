"""Watches on etcd that survive the loss of the member they stream from.

A watch remembers the next revision it wants. etcd sends the events of one revision in one
response (we never ask it to fragment), and the watch takes a whole response before it yields
any of its events, so "the revision after the last response" is always a clean place to resume:
when the stream breaks (the member died, lost its leader, or the connection reset) the watch
opens a new stream on the store's current endpoint from that revision — no event lost, none
repeated. A compacted start revision raises Compacted; the watch ends when the store closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aetcd.rpc as rpc  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from corral.store._etcd_channel import REQUIRE_LEADER, EndpointPool
from corral.store._etcd_codec import KeyCodec
from corral.store._etcd_errors import classify
from corral.store.base import Compacted, Event, StoreError

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


@dataclass(frozen=True)
class WatchLink:
    """What a watch needs from its store."""

    pool: EndpointPool
    codec: KeyCodec
    closed: Callable[[], bool]
    closing: asyncio.Future[None]  # done when the store closes
    saw: Callable[[int], None]  # a response header's revision
    calls: set[Any]  # the open watch calls, cancelled by the store's close


class _Broken(Exception):
    """The stream ended without the store closing; reconnect elsewhere."""


class _Closed(Exception):
    """The store closed while the watch waited on its stream."""


class _Restart(Exception):
    """Open the stream again at once, on the same endpoint."""


async def _pause(link: WatchLink, seconds: float) -> None:
    """Sleep before reconnecting, waking early when the store closes."""
    await asyncio.wait({link.closing}, timeout=seconds)


async def _unless_closed(link: WatchLink, step: Awaitable[Any]) -> Any:
    """The result of `step` (a read or write of the stream), or _Closed when the store closes
    first (closing the channel does not always wake a pending stream operation)."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.wait({task, link.closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
    if link.closing.done() or task.cancelled():
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the store closed, whatever the stream did
        raise _Closed()
    try:
        return task.result()
    except asyncio.InvalidStateError:  # the call ended under us: reconnect
        raise _Broken() from None


def _create(key: bytes, range_end: bytes, start: int) -> Any:
    return rpc.WatchRequest(
        create_request=rpc.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start, prev_kv=True, progress_notify=True
        )
    )


async def follow(
    link: WatchLink, key: bytes, range_end: bytes, start: int, *, from_now: bool
) -> AsyncIterator[Event]:
    """Events for [key, range_end) from revision `start`, across reconnects. With `from_now`
    (the caller gave no start revision), a compacted `start` moves to the oldest kept revision
    instead of raising: nothing was delivered yet, and those revisions are all after the last
    one this store had seen."""
    next_rev = start
    delivered = False
    backoff = _BACKOFF_FIRST
    while not link.closed():
        endpoint = link.pool.current
        call = rpc.WatchStub(link.pool.channel(endpoint)).Watch(metadata=REQUIRE_LEADER)
        link.calls.add(call)
        try:
            await _unless_closed(link, call.write(_create(key, range_end, next_rev)))
            while True:
                response = await _unless_closed(link, call.read())
                if response is grpc.aio.EOF:
                    raise _Broken()
                if response.compact_revision:
                    compacted = int(response.compact_revision)
                    if from_now and not delivered:
                        next_rev = max(next_rev, compacted)
                        raise _Restart()
                    raise Compacted(next_rev, compacted)
                if response.canceled:
                    raise _Broken()
                link.saw(int(response.header.revision))
                link.pool.learn(endpoint, int(response.header.member_id))
                backoff = _BACKOFF_FIRST
                if not response.events:
                    if not response.created:  # a progress notification: all sent up to here
                        next_rev = max(next_rev, int(response.header.revision) + 1)
                    continue
                events = [
                    link.codec.event(e) for e in response.events if e.kv.mod_revision >= next_rev
                ]
                next_rev = int(response.events[-1].kv.mod_revision) + 1
                current = 0
                for event in events:
                    if event.kv.mod_revision != current:
                        if link.closed():
                            return
                        current = event.kv.mod_revision
                    delivered = True
                    yield event
        except _Closed:
            return
        except _Restart:
            continue
        except _Broken:
            link.pool.failed(endpoint)
        except grpc.aio.AioRpcError as error:
            if link.closed():
                return
            failure = classify(error)
            if failure.kind == "answer":
                raise StoreError(f"etcd watch at {endpoint.url}: {failure.detail}") from None
            link.pool.failed(endpoint)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if link.closed() and task is not None and not task.cancelling():
                return  # the store closed its channels under us
            raise
        finally:
            link.calls.discard(call)
            call.cancel()
        if link.closed():
            return
        await _pause(link, backoff)
        backoff = min(backoff * 2, _BACKOFF_MAX)
