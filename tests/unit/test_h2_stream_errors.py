"""HTTP/2 in memory: a malformed request is a stream error, h2's refusals reset their stream,
and the connection's send timeout is its own server block's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError

from tests.unit.proxy_harness import SERVER_NAME, Harness, config, harness_fixture, response


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


def answered_ok(h: Harness, client: object, stream_id: int) -> bool:
    """The stream's request reached an upstream and its 200 came back."""
    h.upstream().reply(response(body=b"fine"))
    client.exchange()  # type: ignore[attr-defined]
    headers = client.response_headers(stream_id)  # type: ignore[attr-defined]
    return headers is not None and headers[b":status"] == b"200"


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ((b"X-Upper", b"v"), "an upper-case field name"),
        ((b"connection", b"keep-alive"), "a connection-specific field"),
        ((b"te", b"gzip"), "TE other than trailers"),
        ((b"content-length", b"ten"), "a content-length that is not a number"),
        ((b":unknown", b"x"), "an unknown pseudo-header"),
        ((b"x-smuggle", b"a\r\nhost: evil.test"), "CR LF in a value"),
        ((b":method", b"POST"), "a repeated pseudo-header"),
        ((b"host", b"other.test"), "host other than :authority"),
        ((b"x-a", b" padded"), "a value with surrounding whitespace"),
    ],
)
def test_malformed_request_resets_only_its_stream(
    h: Harness, field: tuple[bytes, bytes], why: str
) -> None:
    """RFC 9113 §8.1.1: RST_STREAM PROTOCOL_ERROR on the malformed stream; no GOAWAY, and a
    request on the same connection afterwards is served."""
    client = h.h2_client(validate=False)
    bad = client.request("/bad", extra=[field])
    assert client.reset_code(bad) == ErrorCodes.PROTOCOL_ERROR, why
    assert client.goaway() is None, why
    assert not client.closed
    good = client.request("/good")
    assert answered_ok(h, client, good)
    assert h.error_lines(rf"malformed HTTP/2 request .* stream {bad}")


def test_body_longer_than_content_length_resets_only_its_stream(h: Harness) -> None:
    """DATA beyond the announced content-length resets that stream (and its upstream
    connection is dropped); a stream opened before it on the connection still gets its answer."""
    client = h.h2_client()
    first = client.request("/first")
    first_upstream = h.upstream()
    upload = client.request(
        "/upload", method="POST", extra=[(b"content-length", b"3")], end=False
    )
    upload_upstream = h.upstream()
    client.h2.send_data(upload, b"abcdef", end_stream=True)
    client.exchange()
    assert client.reset_code(upload) == ErrorCodes.PROTOCOL_ERROR
    assert client.goaway() is None
    assert upload_upstream.closed
    first_upstream.reply(response(body=b"one"))
    client.exchange()
    assert client.body(first) == b"one"


def test_connection_errors_still_end_the_connection(h: Harness) -> None:
    """A frame out of place (DATA on a stream never opened) is still a connection error."""
    client = h.h2_client()
    client.protocol.data_received(  # DATA, stream 1, 1 byte, before any HEADERS
        b"\x00\x00\x01\x00\x00\x00\x00\x00\x01x"
    )
    h.settle()
    client.exchange()
    assert client.goaway() is not None


def test_refused_data_resets_the_stream_and_says_so(h: Harness) -> None:
    """When h2 refuses a DATA frame of a response, the stream is reset (INTERNAL_ERROR) and an
    error line names it, instead of the rest of the body vanishing silently."""
    client = h.h2_client()
    stream_id = client.request("/")
    upstream = h.upstream()
    connection = client.protocol
    real_send_data = connection.h2.send_data

    def refuse(*args: object, **kwargs: object) -> None:
        raise StreamClosedError(stream_id)

    connection.h2.send_data = refuse
    upstream.reply(response(body=b"x" * 100))
    connection.h2.send_data = real_send_data
    client.exchange()
    assert client.reset_code(stream_id) == ErrorCodes.INTERNAL_ERROR
    assert h.error_lines(rf"HTTP/2 stream {stream_id} .*cannot send DATA")
    assert upstream.closed  # the rest of the response is not read for nobody


def two_servers() -> Harness:
    """One listener, two server blocks: the default with a long send_timeout, and `fast`."""
    default = {
        "listen": "127.0.0.1:8443",
        "server_name": SERVER_NAME,
        "proxy_pass": "app",
        "send_timeout": "60s",
    }
    fast = {**default, "server_name": "fast.test", "send_timeout": "2s"}
    return Harness(config(servers=[default, fast]))


def test_send_timeout_of_the_connection_is_its_sni_servers() -> None:
    """A connection whose SNI named `fast.test` is closed after fast.test's send_timeout when
    the client stops reading, not after the default server's."""
    h = two_servers()
    try:
        client = h.h2_client(server_name="fast.test")
        other = h.h2_client()  # no SNI: the default server block's 60 s
        client.fill()
        other.fill()
        h.advance(3)
        assert client.closed and client.transport.aborted
        assert not other.closed
        assert h.error_lines("stopped reading")
    finally:
        h.close()


def test_pseudo_header_in_trailers_resets_only_its_stream(h: Harness) -> None:
    """Trailers may not carry pseudo-headers: that stream is reset, the connection goes on."""
    client = h.h2_client(validate=False)
    upload = client.request("/upload", method="POST", end=False)
    client.h2.send_data(upload, b"abc")
    client.h2.send_headers(upload, [(b":path", b"/other")], end_stream=True)
    client.exchange()
    assert client.reset_code(upload) == ErrorCodes.PROTOCOL_ERROR
    assert client.goaway() is None
    good = client.request("/good")
    assert answered_ok(h, client, good)
