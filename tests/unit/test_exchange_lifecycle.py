"""Exchanges in memory: body bytes waiting for a connection, cancellation, a client that
leaves, and the same 499 from both client protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from corral.proxy.constants import REPLAY_LIMIT_BYTES
from tests.unit.proxy_harness import Harness, harness_fixture, response


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


class CountingList(list[bytes]):
    """A list that counts how many elements iterating over it visits."""

    visits = 0

    def __iter__(self) -> Iterator[bytes]:
        self.visits += len(self)
        return super().__iter__()


def hold_connects(h: Harness) -> asyncio.Future[None]:
    """Upstream connects wait until the returned future is resolved."""
    gate: asyncio.Future[None] = h.loop.create_future()

    async def connect(host: str, port: int) -> None:
        await asyncio.shield(gate)

    h.connect = connect
    return gate


def test_body_waiting_for_a_connection_is_counted_not_summed(h: Harness) -> None:
    """Each body chunk that arrives before the upstream connection adds its length to a running
    total: the pending chunks are not walked again per chunk (quadratic in their number), the
    client is paused once more than the replay limit waits, and everything reaches the upstream
    in order once connected."""
    gate = hold_connects(h)
    client = h.http1_client()
    chunks = 3000
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: rancher.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    exchange = client.protocol.exchange
    assert exchange is not None
    exchange.pending = counting = CountingList()
    piece = b"x" * 32
    for _ in range(chunks):
        client.send(b"20\r\n" + piece + b"\r\n")
    assert counting.visits <= chunks  # before: about chunks² / 2
    assert exchange.pending_size == sum(len(c) for c in counting) > REPLAY_LIMIT_BYTES
    assert not client.transport.reading  # paused: enough waits already
    client.send(b"0\r\n\r\n")
    gate.set_result(None)
    upstream = h.upstream()
    sent = upstream.received()
    assert sent.count(b"20\r\n" + piece + b"\r\n") == chunks
    assert sent.endswith(b"0\r\n\r\n")
    assert client.transport.reading


def test_aborted_connect_ends_cancelled(h: Harness) -> None:
    """When the client leaves while its upstream connect is in progress, the connect task is
    cancelled and ends cancelled (CancelledError is not turned into a normal return)."""
    hold_connects(h)
    client = h.http1_client()
    client.send(b"GET / HTTP/1.1\r\nHost: rancher.test\r\n\r\n")
    exchange = client.protocol.exchange
    task = exchange.connect_task
    assert task is not None and not task.done()
    client.close()
    h.settle()
    assert task.cancelled()
    assert exchange.connect_task is None
    assert not h.upstreams


def test_client_gone_is_499_over_http1_and_http2(h: Harness) -> None:
    """A client that leaves before the response is logged as 499 once, and the upstream
    connection of its exchange is closed, over HTTP/1.1 and over HTTP/2 alike."""
    logged: list[tuple[str, int]] = []
    h.engine.log_exchange = lambda e: logged.append((e.client.protocol, e.status))  # type: ignore[method-assign,assignment]
    one = h.http1_client()
    one.send(b"GET / HTTP/1.1\r\nHost: rancher.test\r\n\r\n")
    first = h.upstream()
    one.close()
    two = h.h2_client()
    two.request("/")
    second = h.upstream()
    two.close()
    assert sorted(logged) == [("HTTP/1.1", 499), ("HTTP/2.0", 499)]
    assert first.closed and second.closed


def test_pooled_connection_is_reused_after_a_complete_response(h: Harness) -> None:
    """A finished exchange gives its upstream connection back, and the next request uses it."""
    client = h.http1_client()
    client.send(b"GET /a HTTP/1.1\r\nHost: rancher.test\r\n\r\n")
    h.upstream().reply(response())
    client.send(b"GET /b HTTP/1.1\r\nHost: rancher.test\r\n\r\n")
    assert len(h.upstreams) == 1
    assert h.upstream().received().endswith(b"\r\n\r\n")
