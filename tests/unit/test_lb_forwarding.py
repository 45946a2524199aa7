"""The header policy between client and upstream (pure functions, byte round-trips)."""

from __future__ import annotations

import pytest

from corral.proxy import forwarding as fw

LISTENER = fw.forwarded_constants("https", 443)


def head(headers: list[tuple[bytes, bytes]], **kwargs: object) -> bytes:
    options: dict[str, object] = {
        "host": b"rancher.example.com",
        "client_ip": b"10.0.0.9",
        "listener_lines": LISTENER,
        "upgrade": None,
        "chunked": False,
    }
    options.update(kwargs)
    return fw.build_upstream_head(b"GET", b"/v3?x=1", headers, **options)  # type: ignore[arg-type]


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def test_request_line_host_and_forwarded_headers() -> None:
    """The upstream sees HTTP/1.1, the client's Host and the three X-Forwarded headers."""
    out = lines(head([(b"Host", b"rancher.example.com"), (b"Accept", b"*/*")]))
    assert out[0] == b"GET /v3?x=1 HTTP/1.1"
    assert out[1] == b"Host: rancher.example.com"
    assert b"Accept: */*" in out
    assert b"X-Forwarded-Proto: https" in out
    assert b"X-Forwarded-Port: 443" in out
    assert b"X-Forwarded-For: 10.0.0.9" in out
    assert out[-2:] == [b"", b""]


def test_forwarded_for_is_appended_to_incoming_values() -> None:
    """Incoming X-Forwarded-For values (even several headers) come first, then the client."""
    out = lines(head([(b"X-Forwarded-For", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")]))
    assert b"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9" in out
    assert sum(1 for line in out if line.lower().startswith(b"x-forwarded-for")) == 1


def test_client_forwarded_proto_and_port_are_replaced() -> None:
    """A client cannot claim another scheme or port."""
    out = lines(head([(b"X-Forwarded-Proto", b"http"), (b"X-Forwarded-Port", b"80")]))
    assert b"X-Forwarded-Proto: http" not in out
    assert b"X-Forwarded-Port: 80" not in out


@pytest.mark.parametrize(
    "name",
    [
        b"Connection",
        b"Keep-Alive",
        b"Proxy-Connection",
        b"TE",
        b"Trailer",
        b"Upgrade",
        b"Transfer-Encoding",
        b"Proxy-Authorization",
    ],
)
def test_hop_by_hop_headers_are_dropped(name: bytes) -> None:
    """Headers about the client's connection never reach the upstream."""
    out = head([(name, b"x")])
    assert name + b":" not in out


def test_headers_named_by_connection_are_dropped() -> None:
    """`Connection: X-Secret` makes X-Secret hop-by-hop."""
    out = head([(b"Connection", b"keep-alive, X-Secret"), (b"X-Secret", b"1"), (b"X-Ok", b"2")])
    assert b"X-Secret" not in out
    assert b"X-Ok: 2" in out


def test_upgrade_is_mapped_like_the_seeds() -> None:
    """An upgrade request goes up with Upgrade: <value> and Connection: upgrade."""
    out = lines(head([(b"Upgrade", b"SPDY/3.1"), (b"Connection", b"Upgrade")], upgrade=b"SPDY/3.1"))
    assert b"Upgrade: SPDY/3.1" in out
    assert b"Connection: upgrade" in out


def test_chunked_request_is_reframed() -> None:
    """A chunked request body is announced upstream as chunked again."""
    assert b"Transfer-Encoding: chunked\r\n" in head([], chunked=True)


@pytest.mark.parametrize(
    ("status", "headers", "head_request", "http10", "expected"),
    [
        (200, [(b"Content-Length", b"5")], False, False, (fw.FRAMING_LENGTH, False)),
        (200, [(b"Transfer-Encoding", b"chunked")], False, False, (fw.FRAMING_CHUNKED, False)),
        (200, [(b"Transfer-Encoding", b"chunked")], False, True, (fw.FRAMING_CLOSE, True)),
        (200, [], False, False, (fw.FRAMING_CHUNKED, False)),
        (200, [], False, True, (fw.FRAMING_CLOSE, True)),
        (200, [(b"Content-Length", b"5")], True, False, (fw.FRAMING_NONE, False)),
        (204, [], False, False, (fw.FRAMING_NONE, False)),
        (304, [(b"Content-Length", b"5")], False, False, (fw.FRAMING_NONE, False)),
    ],
)
def test_response_framing(
    status: int,
    headers: list[tuple[bytes, bytes]],
    head_request: bool,
    http10: bool,
    expected: tuple[int, bool],
) -> None:
    """The client-side framing for each kind of upstream response."""
    got = fw.response_framing(status, headers, head_request=head_request, client_http10=http10)
    assert got == expected


def test_response_head_rewrites_connection_state() -> None:
    """The upstream's keep-alive never leaks; the client's own state is written."""
    upstream = [
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Content-Length", b"2"),
    ]
    out = fw.build_response_head(
        200, b"OK", upstream, framing=fw.FRAMING_LENGTH, close=True, client_http10=False
    )
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"


def test_response_head_chunked_drops_content_length_and_adds_te() -> None:
    """Re-chunked responses announce chunked and nothing else about length."""
    out = fw.build_response_head(
        200,
        b"OK",
        [(b"Transfer-Encoding", b"chunked")],
        framing=fw.FRAMING_CHUNKED,
        close=False,
        client_http10=False,
    )
    assert out == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_response_head_for_http10_keep_alive_client() -> None:
    """An HTTP/1.0 client that keeps the connection is told so."""
    out = fw.build_response_head(
        200,
        b"OK",
        [(b"Content-Length", b"0")],
        framing=fw.FRAMING_LENGTH,
        close=False,
        client_http10=True,
    )
    assert b"Connection: keep-alive\r\n" in out


def test_switching_protocols_head_keeps_upgrade() -> None:
    """A 101 carries the upstream's Upgrade value and Connection: upgrade."""
    out = fw.build_response_head(
        101,
        b"Switching Protocols",
        [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", b"abc"),
        ],
        framing=fw.FRAMING_NONE,
        close=False,
        client_http10=False,
        upgrade=True,
    )
    assert b"Upgrade: websocket\r\nConnection: upgrade\r\n" in out
    assert b"Sec-WebSocket-Accept: abc\r\n" in out


@pytest.mark.parametrize(
    ("minor", "connection", "reusable"),
    [
        (1, None, True),
        (1, b"close", False),
        (0, None, False),
        (0, b"Keep-Alive", True),
        (1, b"keep-alive, Close", False),
    ],
)
def test_upstream_keep_alive(minor: int, connection: bytes | None, reusable: bool) -> None:
    """Upstream connection reuse follows the response's version and Connection header."""
    assert fw.upstream_keeps_alive(minor, connection) is reusable


def test_error_response_is_complete_http() -> None:
    """A proxy-made error has a length, a type and (when closing) Connection: close."""
    out = fw.error_response(503, "Service Unavailable", "no healthy endpoint", close=True)
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: 20\r\n" in out
    assert b"Connection: close\r\n" in out
    assert out.endswith(b"\r\n\r\nno healthy endpoint\n")
