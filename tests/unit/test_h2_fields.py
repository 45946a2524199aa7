"""HTTP/2 header blocks ↔ the proxy's HTTP/1.1 messages (pure functions on bytes)."""

from __future__ import annotations

import pytest

from corral.proxy import forwarding as fw
from corral.proxy.h2_fields import (
    parse_request,
    request_problem,
    response_fields,
    trailer_fields,
    websocket_fields,
)

GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"rancher.example.com"),
    (b":path", b"/v3?x=1"),
]


def test_pseudo_headers_are_split_from_fields() -> None:
    """Method, path and authority come from pseudo-headers; other fields keep their order."""
    request = parse_request([*GET, (b"accept", b"*/*"), (b"x-a", b"1")])
    assert (request.method, request.path, request.authority) == (
        b"GET",
        b"/v3?x=1",
        b"rancher.example.com",
    )
    assert request.protocol is None
    assert request.fields == [(b"accept", b"*/*"), (b"x-a", b"1")]


def test_cookie_crumbs_are_joined() -> None:
    """Several `cookie` fields become one, joined with "; " (RFC 9113 §8.2.3)."""
    request = parse_request([*GET, (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")])
    assert request.fields == [(b"x", b"y"), (b"cookie", b"a=1; b=2")]


def test_header_list_size_counts_32_per_field() -> None:
    """The size is the sum of name + value + 32 over every field, pseudo-headers included."""
    request = parse_request([(b":method", b"GET"), (b"ab", b"cde")])
    assert request.list_size == (7 + 3 + 32) + (2 + 3 + 32)


def test_upstream_head_matches_http1_translation() -> None:
    """The translated request gives build_upstream_head what an HTTP/1.1 client would."""
    request = parse_request([*GET, (b"x-forwarded-for", b"1.2.3.4"), (b"te", b"trailers")])
    head = fw.build_upstream_head(
        request.method,
        request.path,
        request.fields or [],
        host=request.authority or b"",
        client_ip=b"10.0.0.9",
        listener_lines=fw.forwarded_constants("https", 443),
        upgrade=None,
        chunked=False,
    )
    lines = head.split(b"\r\n")
    assert lines[:2] == [b"GET /v3?x=1 HTTP/1.1", b"Host: rancher.example.com"]
    assert b"X-Forwarded-For: 1.2.3.4, 10.0.0.9" in lines
    assert not [line for line in lines if line.lower().startswith(b"te:")]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([(b":method", b"CONNECT"), (b":authority", b"h:443")], 501),
        (
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"connect-udp"),
                (b":path", b"/x"),
            ],
            501,
        ),
        ([(b":method", b"GET"), (b":path", b"x")], 400),
        ([(b":method", b"GET"), (b":path", b"/"), (b"x", b"v" * 200)], 431),
    ],
)
def test_requests_the_proxy_answers_itself(fields: list[tuple[bytes, bytes]], code: int) -> None:
    """Plain CONNECT, other :protocol values, a bad :path, and an oversized list."""
    problem = request_problem(parse_request(fields), max_list_size=200)
    assert problem is not None and problem.code == code


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"OPTIONS"), (b":path", b"*")],
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":path", b"/ws")],
    ],
)
def test_requests_that_are_forwarded(fields: list[tuple[bytes, bytes]]) -> None:
    """`OPTIONS *` and an extended CONNECT for websocket are fine."""
    assert request_problem(parse_request(fields), max_list_size=1000) is None


def test_websocket_fields_gain_a_key_only_when_missing() -> None:
    """The upstream's HTTP/1.1 handshake needs Sec-WebSocket-Key: a random 16-byte one."""
    fields = [(b"sec-websocket-version", b"13")]
    added = websocket_fields(fields)
    keys = [v for n, v in added if n == b"sec-websocket-key"]
    assert len(keys) == 1 and len(keys[0]) == 24
    assert websocket_fields(fields) != added  # random each time
    kept = [(b"sec-websocket-key", b"given")]
    assert websocket_fields(kept) == kept


def test_response_fields_drop_connection_specific_ones() -> None:
    """:status first, names lower-cased, hop-by-hop and Connection-named fields dropped."""
    upstream = [
        (b"Content-Type", b"text/plain"),
        (b"Connection", b"keep-alive, X-Hop"),
        (b"X-Hop", b"secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Accept", b"abc"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]
    assert response_fields(200, upstream) == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_trailer_fields_keep_only_end_to_end_metadata() -> None:
    """Trailers lose framing/routing fields and keep the rest, lower-cased."""
    trailers = [(b"X-Checksum", b"1"), (b"Content-Length", b"5"), (b"Grpc-Status", b"0")]
    assert trailer_fields(trailers) == [(b"x-checksum", b"1"), (b"grpc-status", b"0")]


def test_protocol_errors_are_logged_without_header_values() -> None:
    """h2's messages quoting a header value lose the value; others stay whole."""
    from corral.proxy.http2 import without_values

    leaky = ValueError("Illegal character '\\n' in header value: b'Bearer s3cr3t\\n'")
    assert "s3cr3t" not in without_values(leaky)
    assert without_values(leaky).startswith("Illegal character")
    plain = ValueError("Received uppercase header name b'X-A'.")
    assert without_values(plain) == str(plain)


GOOD = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")]


@pytest.mark.parametrize(
    ("block", "why"),
    [
        ([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")], "no :path"),
        ([*GOOD[:2], (b"x", b"1"), *GOOD[2:]], "a pseudo-header after a regular field"),
        ([*GOOD, (b"", b"v")], "an empty name"),
        ([*GOOD, (b"x:y", b"v")], "a colon in a regular name"),
        ([*GOOD, (b"x-\xff", b"v")], "a byte above 0x7e in a name"),
        ([*GOOD, (b"x", b"a\x00b")], "NUL in a value"),
        ([*GOOD, (b":protocol", b"websocket")], ":protocol without CONNECT"),
        ([*GOOD, (b"keep-alive", b"5")], "a connection-specific field"),
        ([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")], "no authority"),
        ([*GOOD, (b"host", b"a"), (b"host", b"a")], "two host fields"),
        ([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b""), GOOD[3]], "empty :path"),
    ],
)
def test_malformed_blocks_are_named(block: list[tuple[bytes, bytes]], why: str) -> None:
    """Each rule of RFC 9113 §8.2-8.3 a request block can break is found (a stream error)."""
    assert parse_request(block).malformed is not None, why


def test_well_formed_blocks_pass() -> None:
    """Ordinary requests, extended CONNECT, te: trailers, a host equal to :authority and
    cookie crumbs are not malformed."""
    websocket = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/ws"),
        (b":authority", b"a"),
    ]
    for block in (
        GOOD,
        websocket,
        [*GOOD, (b"te", b"Trailers"), (b"host", b"a"), (b"cookie", b"x=1"), (b"cookie", b"y=2")],
        [*GOOD, (b"x-empty", b"")],
    ):
        assert parse_request(block).malformed is None, block


def test_malformed_reason_never_quotes_a_value() -> None:
    """The reason goes to the error log: names yes, values (credentials) never."""
    reason = parse_request([*GOOD, (b"authorization", b"Bearer s3cr3t\r\n")]).malformed
    assert reason is not None and "s3cr3t" not in reason
