"""HTTP/2 in memory: a request's exchange starts once the loop iteration's reads are done, so an
upstream connection a response hands back in that iteration serves it (no new connection), and a
stream reset within the iteration never reaches an upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.proxy_harness import SERVER_NAME, H2Peer, Harness, harness_fixture, response


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


def queue_request(client: H2Peer, path: str) -> int:
    """Hand the proxy a request's HEADERS without running the loop afterwards."""
    stream_id: int = client.h2.get_next_available_stream_id()
    headers = [
        (b":method", b"GET"),
        (b":path", path.encode()),
        (b":scheme", b"https"),
        (b":authority", SERVER_NAME.encode()),
    ]
    client.h2.send_headers(stream_id, headers, end_stream=True)
    client.protocol.data_received(client.h2.data_to_send())
    return stream_id


def test_a_connection_freed_in_the_same_iteration_serves_the_next_request(h: Harness) -> None:
    """A request read before, in the same loop iteration, a response frees the only upstream
    connection goes out on that connection: the proxy opens no second one."""
    client = h.h2_client()
    first = client.request("/first")
    upstream = h.upstream()
    assert upstream.received().startswith(b"GET /first ")
    second = queue_request(client, "/second")
    upstream.protocol.data_received(response(body=b"one"))  # same iteration
    h.settle()
    assert len(h.upstreams) == 1
    assert upstream.received().startswith(b"GET /second ")
    upstream.reply(response(body=b"two"))
    client.exchange()
    assert client.body(first) == b"one"
    assert client.body(second) == b"two"


def test_a_stream_reset_in_the_same_iteration_reaches_no_upstream(h: Harness) -> None:
    """HEADERS then RST_STREAM read before the loop runs again: no upstream connection."""
    client = h.h2_client()
    stream_id = queue_request(client, "/gone")
    client.h2.reset_stream(stream_id)
    client.protocol.data_received(client.h2.data_to_send())
    h.settle()
    assert h.upstreams == []
    assert client.goaway() is None
