"""One HTTP/1.1 connection from the proxy to an upstream endpoint (httptools response parser).

While an exchange owns it, parsed response events go to the exchange; while idle it sits in its
endpoint's keep-alive pool; after a 101 it is one half of a byte tunnel.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from corral.proxy import forwarding
from corral.proxy.constants import WRITE_HIGH_WATER_BYTES
from corral.proxy.errors import BAD_GATEWAY

if TYPE_CHECKING:
    from corral.proxy.downstream import Downstream
    from corral.proxy.engine import Engine
    from corral.proxy.exchange import Exchange
    from corral.proxy.upstream import Endpoint


class TunnelPeer(Protocol):
    """The client end of a tunnel: an HTTP/1.1 connection after 101, or an HTTP/2 stream."""

    def send(self, data: bytes) -> None:
        """Bytes from the upstream, for the client."""

    def tunnel_closed(self) -> None:
        """The upstream end closed."""

    def pause_reading_for_backpressure(self) -> None:
        """The upstream's write buffer is full."""

    def resume_reading_for_backpressure(self) -> None:
        """The upstream drained its write buffer."""


class UpstreamConnection(asyncio.Protocol):
    """The proxy's client side towards one endpoint."""

    __slots__ = (
        "closed",
        "connection",
        "content_length",
        "endpoint",
        "engine",
        "exchange",
        "framed",
        "headers",
        "idle_since",
        "interim",
        "keep_alive",
        "last_active",
        "parser",
        "pooled",
        "read_paused",
        "reason",
        "switching",
        "transport",
        "tunnel_peer",
        "until_close",
    )

    def __init__(self, engine: Engine, endpoint: Endpoint) -> None:
        self.engine = engine
        self.endpoint = endpoint
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.connection: bytes | None = None  # the response's Connection header value
        self.content_length = -1  # the response's Content-Length, -1 when absent
        self.framed = False  # the response has Content-Length or Transfer-Encoding
        self.interim = False
        self.switching = False
        self.keep_alive = True
        self.until_close = False
        self.closed = False
        self.read_paused = False
        self.tunnel_peer: TunnelPeer | None = None
        self.last_active = engine.now
        self.idle_since = 0.0
        self.pooled = False  # in the endpoint's idle list (the endpoint sets it)

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = self.transport = cast(asyncio.Transport, transport)  # uvloop's: duck
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)

    def data_received(self, data: bytes) -> None:
        peer = self.tunnel_peer
        if peer is not None:
            self.last_active = self.engine.now
            peer.send(data)
            return
        exchange = self.exchange
        if exchange is None:  # an idle pooled connection must stay silent
            self.close()
            return
        exchange.upstream_last = self.engine.now
        client = exchange.client
        client.begin_batch()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._switch(data[upgrade.args[0] :])
        except httptools.HttpParserError as exc:
            failed = self.exchange
            if failed is not None:
                failed.on_upstream_lost(BAD_GATEWAY.because(f"invalid response: {exc}"))
        finally:
            client.end_batch()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        peer = self.tunnel_peer
        if peer is not None:
            self.tunnel_peer = None
            peer.tunnel_closed()
            return
        exchange = self.exchange
        if exchange is None:
            self.endpoint.forget(self)
            return
        client = exchange.client
        client.begin_batch()
        try:
            if self.until_close and exchange.response_started and not exchange.response_done:
                exchange.on_response_complete(upstream_reusable=False)  # body ran to EOF
            else:
                detail = f"connection closed by upstream ({exc!r})" if exc else "upstream closed"
                exchange.on_upstream_lost(BAD_GATEWAY.because(detail))
        finally:
            client.end_batch()

    def pause_writing(self) -> None:
        client = self._client()
        if client is not None:
            client.pause_reading_for_backpressure()

    def resume_writing(self) -> None:
        client = self._client()
        if client is not None:
            client.resume_reading_for_backpressure()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers = []
        self.reason = b""
        self.connection = None
        self.content_length = -1
        self.framed = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        size = len(name)
        if size == 10:
            if name.lower() == b"connection":
                old = self.connection
                self.connection = value if old is None else old + b"," + value
        elif size == 14:
            if name.lower() == b"content-length":
                self.framed = True
                self.content_length = int(value) if value.isdigit() else -1
        elif size == 17 and name.lower() == b"transfer-encoding":
            self.framed = True
            self.content_length = -1

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and status != 101:
            self.interim = True
            exchange.on_interim(status, self.reason or b"Continue")
            return
        if status == 101:
            self.switching = True
            return
        headers = self.headers
        self.keep_alive = forwarding.upstream_keeps_alive(
            0 if parser.get_http_version() == "1.0" else 1, self.connection
        )
        exchange.on_response_head(status, self.reason or b"", headers, self.content_length)
        self.until_close = not self.framed and exchange.framing != forwarding.FRAMING_NONE
        if self.until_close:
            self.keep_alive = False
        if exchange.head_request:
            # llhttp would wait for the body a HEAD response announces but never sends.
            self.parser = httptools.HttpResponseParser(self)
            exchange.on_response_complete(upstream_reusable=self.keep_alive)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.switching:
            return  # feed_data raises HttpParserUpgrade next
        exchange = self.exchange
        if exchange is not None and not exchange.response_done:
            exchange.on_response_complete(upstream_reusable=self.keep_alive)

    # -- helpers ---------------------------------------------------------------------------------
    def _switch(self, rest: bytes) -> None:
        exchange = self.exchange
        if exchange is None or not self.switching or exchange.upgrade is None:
            if exchange is not None:
                exchange.on_upstream_lost(BAD_GATEWAY.because("unexpected 101 response"))
            self.close()
            return
        exchange.on_switching_protocols(self.reason or b"Switching Protocols", self.headers, rest)

    def _client(self) -> Downstream | TunnelPeer | None:
        if self.tunnel_peer is not None:
            return self.tunnel_peer
        return self.exchange.client if self.exchange is not None else None

    def open_tunnel(self, peer: TunnelPeer, rest: bytes, held: bytes) -> None:
        """After the 101: relay raw bytes between this connection and `peer`, the client end.
        `rest` came from the upstream right after its 101, `held` from the client after its
        request (both before the tunnel existed)."""
        self.tunnel_peer = peer
        self.last_active = self.engine.now
        if rest:
            peer.send(rest)
        if held:
            self.transport.write(held)

    def close_tunnel(self) -> None:
        """The client end of the tunnel is gone: close this end without calling it back."""
        self.tunnel_peer = None
        self.close()

    def is_usable(self) -> bool:
        """Open, idle and fit for another request."""
        return not self.closed and not self.transport.is_closing()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        """Stop reading (the client cannot take more right now)."""
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again."""
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
