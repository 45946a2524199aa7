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


def test_upgrade_is_mapped_like_rancher_example_nginx() -> None:
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


# -- trusted proxies: X-Forwarded-* kept from the external load balancer ---------------------


def trusted_head(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The upstream head lines for a request that came from a trusted proxy (listener http:80)."""
    kept = fw.trusted_forwarded_lines(headers, "http", 80)
    return lines(head(headers, listener_lines=kept))


def test_trusted_proxy_keeps_proto_and_port() -> None:
    """What the external load balancer set (https, 443) reaches the upstream, once each."""
    out = trusted_head([(b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Port", b"443")])
    assert b"X-Forwarded-Proto: https" in out
    assert b"X-Forwarded-Port: 443" in out
    assert sum(1 for line in out if line.lower().startswith(b"x-forwarded-proto")) == 1
    assert sum(1 for line in out if line.lower().startswith(b"x-forwarded-port")) == 1
    assert b"X-Forwarded-Proto: http" not in out


def test_trusted_proxy_forwarded_for_gets_the_peer_appended() -> None:
    """X-Forwarded-For from a trusted proxy is kept and the proxy's own address appended."""
    out = trusted_head([(b"X-Forwarded-For", b"203.0.113.7"), (b"X-Forwarded-Proto", b"https")])
    assert b"X-Forwarded-For: 203.0.113.7, 10.0.0.9" in out


def test_trusted_proxy_missing_headers_fall_back_to_the_listener() -> None:
    """A trusted proxy that sent no (or an empty) Proto/Port gets the listener's own values."""
    assert fw.trusted_forwarded_lines([], "http", 80) == fw.forwarded_constants("http", 80)
    empty = [(b"X-Forwarded-Proto", b" "), (b"x-forwarded-port", b"")]
    assert fw.trusted_forwarded_lines(empty, "http", 8080) == fw.forwarded_constants("http", 8080)
    only_proto = fw.trusted_forwarded_lines([(b"x-forwarded-proto", b"https")], "http", 80)
    assert only_proto == b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 80\r\n"


def test_trusted_proxy_first_value_wins() -> None:
    """Of repeated X-Forwarded-Proto headers the first (the outermost proxy's) is kept."""
    headers = [(b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Proto", b"http")]
    assert fw.trusted_forwarded_lines(headers, "http", 80).startswith(b"X-Forwarded-Proto: https")


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("10.0.0.100", True),  # the single address
        ("10.1.2.3", True),  # inside the /16
        ("10.2.0.1", False),
        ("127.0.0.1", False),
        ("fd00::1", True),
        ("fe80::1%eth0", False),
        ("::ffff:10.1.0.5", True),  # an IPv4 peer on a dual-stack socket
        ("-", False),
        ("", False),
    ],
)
def test_trusted_proxies_match_addresses_and_networks(address: str, trusted: bool) -> None:
    """A peer is trusted when its address is in one of the CIDRs (v4-mapped v6 as v4)."""
    proxies = fw.TrustedProxies(["10.0.0.100", "10.1.0.0/16", "fd00::/8"])
    assert proxies.trusts(address) is trusted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/24", "has host bits set: write 10.0.0.0/24"),
        ("10.0.0.0/33", "is not an address or CIDR"),
        ("lb.example.com", "is not an address or CIDR"),
    ],
)
def test_trusted_proxies_config_rejects_bad_cidrs(text: str, message: str) -> None:
    """`trusted_proxies` items must be addresses or networks; the error says what to write."""
    from pydantic import ValidationError

    from corral.config.lb import LbConfig

    servers = [{"listen": 80, "server_name": "x.test", "redirect": "https://$server_name"}]
    with pytest.raises(ValidationError) as info:
        LbConfig.model_validate({"servers": servers, "trusted_proxies": [text]})
    assert message in str(info.value)


def test_trusted_proxies_default_is_empty() -> None:
    """Without the key nothing is trusted: corral lb keeps replacing Proto/Port."""
    from corral.config.lb import LbConfig

    servers = [{"listen": 80, "server_name": "x.test", "redirect": "https://$server_name"}]
    assert LbConfig.model_validate({"servers": servers}).trusted_proxies == []
