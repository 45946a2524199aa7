"""`Upgrade: h2c` is refused by default (h2c smuggling): the request is served as plain
HTTP/1.1, in memory through ClientConnection; other upgrades still pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.proxy import forwarding
from tests.unit.proxy_harness import Harness, config, harness_fixture, response

H2C_REQUEST = (
    b"GET /echo HTTP/1.1\r\nHost: rancher.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


def test_h2c_upgrade_is_not_forwarded(h: Harness) -> None:
    """The upstream gets an ordinary GET: no Upgrade, no Connection: upgrade, no HTTP2-Settings;
    a 101 it might send anyway is not taken as a tunnel."""
    client = h.http1_client()
    client.send(H2C_REQUEST)
    sent = h.upstream().received().lower()
    assert sent.startswith(b"get /echo http/1.1\r\n")
    assert b"upgrade" not in sent
    assert b"http2-settings" not in sent


def test_connection_goes_on_after_a_refused_h2c_upgrade(h: Harness) -> None:
    """The response comes back over HTTP/1.1 and a pipelined request behind the h2c one is
    parsed and served on the same connection."""
    client = h.http1_client()
    client.send(H2C_REQUEST + b"GET /second HTTP/1.1\r\nHost: rancher.test\r\n\r\n")
    upstream = h.upstream()
    assert upstream.received().startswith(b"GET /echo ")
    upstream.reply(response(body=b"first"))
    assert upstream.received().startswith(b"GET /second ")
    upstream.reply(response(body=b"second"))
    out = client.take()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"second") and b"first" in out
    assert not client.closed


def test_h2c_upgrade_with_a_body_is_a_bad_request(h: Harness) -> None:
    """llhttp would not parse the body of an upgrade request: 400, and the connection closes."""
    client = h.http1_client()
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: rancher.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )
    assert client.take().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert client.closed
    assert not h.upstreams


def test_pass_h2c_upgrade_forwards_it() -> None:
    """With `pass_h2c_upgrade: true` the server block forwards the upgrade as before."""
    for h in harness_fixture(config(server={"pass_h2c_upgrade": True})):
        client = h.http1_client()
        client.send(H2C_REQUEST)
        sent = h.upstream().received()
        assert b"Upgrade: h2c\r\nConnection: upgrade\r\n" in sent


def test_websocket_upgrade_still_forwarded(h: Harness) -> None:
    """Refusing h2c leaves WebSocket alone: Upgrade: websocket goes up, the 101 opens a tunnel."""
    client = h.http1_client()
    client.send(
        b"GET /ws HTTP/1.1\r\nHost: rancher.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    upstream = h.upstream()
    assert b"Upgrade: websocket\r\nConnection: upgrade\r\n" in upstream.received()
    upstream.reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\n\r\n")
    assert client.take().startswith(b"HTTP/1.1 101 ")
    client.send(b"frame")
    assert upstream.received() == b"frame"


def test_connect_method_is_not_implemented(h: Harness) -> None:
    """CONNECT (a tunnel llhttp would start after the head) is answered 501."""
    client = h.http1_client()
    client.send(b"CONNECT /x HTTP/1.1\r\nHost: rancher.test\r\n\r\n")
    assert client.take().startswith(b"HTTP/1.1 501 ")
    assert not h.upstreams


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"h2c", None),
        (b"H2C", None),
        (b"websocket", b"websocket"),
        (b"h2c, websocket", b"websocket"),
        (b"SPDY/3.1", b"SPDY/3.1"),
    ],
)
def test_requested_upgrade_drops_only_h2c(value: bytes, expected: bytes | None) -> None:
    """The Upgrade value forwarded: h2c tokens removed, other protocols kept as sent."""
    headers = [(b"Host", b"a"), (b"Upgrade", value)]
    assert forwarding.requested_upgrade(headers, pass_h2c=False) == expected
    assert forwarding.requested_upgrade(headers, pass_h2c=True) == value
