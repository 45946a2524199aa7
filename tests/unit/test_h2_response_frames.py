"""HTTP/2 in memory: the frames of a response as the client's h2 sees them: an interim 100 before
the final head, END_STREAM on the head when no body can follow, on the last DATA frame, or on
trailing HEADERS."""

from __future__ import annotations

from collections.abc import Iterator

import h2.events
import pytest

from tests.unit.proxy_harness import Harness, harness_fixture, response


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


def kinds(events: list[h2.events.Event]) -> list[str]:
    """The event class names, without the connection-level ones."""
    return [type(e).__name__ for e in events if getattr(e, "stream_id", 0)]


def test_interim_100_comes_before_the_final_head(h: Harness) -> None:
    """An upstream 100 Continue reaches the client as an informational head, then the 200 and
    its body end the stream."""
    client = h.h2_client()
    stream_id = client.request("/upload", method="POST", end=False)
    upstream = h.upstream()
    upstream.reply(b"HTTP/1.1 100 Continue\r\n\r\n")
    client.exchange()
    client.h2.send_data(stream_id, b"abc", end_stream=True)
    client.exchange()
    upstream.reply(response(body=b"done"))
    client.exchange()
    seen = kinds(client.of_stream(stream_id))
    assert seen[0] == "InformationalResponseReceived"
    assert seen.index("ResponseReceived") > 0
    assert client.body(stream_id) == b"done"
    assert seen[-1] == "StreamEnded"


def test_a_bodiless_response_ends_the_stream_on_its_head(h: Harness) -> None:
    """A 204 is one HEADERS frame with END_STREAM: no DATA frame follows."""
    client = h.h2_client()
    stream_id = client.request("/empty")
    h.upstream().reply(b"HTTP/1.1 204 No Content\r\n\r\n")
    client.exchange()
    events = client.of_stream(stream_id)
    assert kinds(events) == ["ResponseReceived", "StreamEnded"]
    head = events[0]
    assert isinstance(head, h2.events.ResponseReceived) and head.stream_ended is not None


def test_a_body_ends_the_stream_on_its_last_data_frame(h: Harness) -> None:
    """A small complete response: HEADERS, then one DATA frame carrying END_STREAM."""
    client = h.h2_client()
    stream_id = client.request("/small")
    h.upstream().reply(response(body=b"hello"))
    client.exchange()
    events = client.of_stream(stream_id)
    assert kinds(events) == ["ResponseReceived", "DataReceived", "StreamEnded"]
    data = events[1]
    assert isinstance(data, h2.events.DataReceived) and data.stream_ended is not None
    assert client.response_headers(stream_id) == {
        b":status": b"200",
        b"content-length": b"5",
    }


def test_upstream_trailers_end_the_stream_as_trailing_headers(h: Harness) -> None:
    """A chunked response with a trailer: its DATA, then trailing HEADERS with END_STREAM."""
    client = h.h2_client()
    stream_id = client.request("/grpc", extra=[(b"te", b"trailers")])
    h.upstream().reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n"
        b"3\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n"
    )
    client.exchange()
    events = client.of_stream(stream_id)
    assert kinds(events)[-2:] == ["TrailersReceived", "StreamEnded"]
    trailers = next(e for e in events if isinstance(e, h2.events.TrailersReceived))
    assert list(trailers.headers or []) == [(b"grpc-status", b"0")]
    assert client.body(stream_id) == b"abc"


def test_a_body_beyond_the_window_waits_for_window_updates(h: Harness) -> None:
    """A 100,000-byte body and the client's 65,535-byte window: exactly the window arrives,
    the rest (then END_STREAM) once the client acknowledges what it read."""
    client = h.h2_client()
    stream_id = client.request("/large")
    body = bytes(range(256)) * 390 + b"x" * 160
    h.upstream().reply(response(body=body))
    client.exchange()
    assert len(client.body(stream_id)) == 65535
    assert "StreamEnded" not in kinds(client.of_stream(stream_id))
    client.h2.acknowledge_received_data(65535, stream_id)
    client.exchange()
    assert client.body(stream_id) == body
    assert kinds(client.of_stream(stream_id))[-1] == "StreamEnded"
