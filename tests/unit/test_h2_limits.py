"""HTTP/2 in memory: SETTINGS_MAX_CONCURRENT_STREAMS holds however many streams the connection
has opened and closed before, and a header block h2load-like clients send again and again (every
field from the dynamic table) decodes to the same request each time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings

from tests.unit.proxy_harness import Harness, config, harness_fixture, response

LIMIT = 2
MAX_STREAMS = SettingCodes.MAX_CONCURRENT_STREAMS


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture(config(http2={"max_concurrent_streams": LIMIT}))


def test_closed_streams_do_not_count_against_the_limit(h: Harness) -> None:
    """Rounds of LIMIT concurrent streams, each round answered before the next: every stream is
    served and no GOAWAY comes (the streams closed before still sit in h2's table)."""
    client = h.h2_client()
    for _ in range(3):
        streams = [client.request(f"/r{i}") for i in range(LIMIT)]
        upstreams = h.upstreams[-LIMIT:]
        for upstream in upstreams:
            upstream.reply(response(body=b"ok"))
        client.exchange()
        for stream_id in streams:
            headers = client.response_headers(stream_id)
            assert headers is not None and headers[b":status"] == b"200"
    assert client.goaway() is None


def test_one_stream_beyond_the_limit_is_refused(h: Harness) -> None:
    """With LIMIT streams still open, opening one more is a protocol error (GOAWAY)."""
    client = h.h2_client()
    first = client.request("/a")
    h.upstream().reply(response(body=b"ok"))  # one closed stream in h2's table
    client.exchange()
    assert client.response_headers(first) is not None
    for i in range(LIMIT):
        client.request(f"/open{i}")
    assert client.goaway() is None
    # The client's own h2 would refuse to exceed the limit the proxy announced.
    client.h2.remote_settings = Settings(client=False, initial_values={MAX_STREAMS: LIMIT + 1})
    client.request("/one-too-many")
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_a_repeated_request_decodes_the_same_each_time(h: Harness) -> None:
    """The second and third identical requests (fields indexed in the dynamic table) reach the
    upstream with the same head as the first."""
    client = h.h2_client()
    extra = [(b"user-agent", b"h2load nghttp2/1.52.0"), (b"accept", b"*/*"), (b"x-a", b"1")]
    heads = []
    for _ in range(3):
        stream_id = client.request("/same", extra=extra)
        upstream = h.upstream()
        heads.append(upstream.received())
        upstream.reply(response(body=b"ok"))
        client.exchange()
        assert client.body(stream_id) == b"ok"
    assert heads[0] == heads[1] == heads[2]
    assert heads[0].startswith(b"GET /same HTTP/1.1\r\n")
    assert b"\r\nx-a: 1\r\n" in heads[0].lower()
