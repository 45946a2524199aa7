"""A downstream HTTP/1.1 connection (httptools): limits, keep-alive, pipelining, upgrades.

The connection parses requests, turns each into an `Exchange` and runs them one at a time in
arrival order. It answers malformed input itself (400/408/414/431/501) and closes; nothing a
client sends can disturb another connection. After a 101 it becomes one half of a byte tunnel.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final, cast

import httptools

from corral.proxy import forwarding
from corral.proxy.constants import DRAIN_IDLE_CLOSE_S, WRITE_HIGH_WATER_BYTES
from corral.proxy.errors import (
    BAD_REQUEST,
    HEADERS_TOO_LARGE,
    REQUEST_TIMEOUT,
    URI_TOO_LONG,
    ProxyStatus,
    RequestRejected,
)
from corral.proxy.exchange import Exchange
from corral.proxy.http1_writer import Http1Writer
from corral.proxy.http2 import Http2Connection
from corral.proxy.request_head import read_request_head

if TYPE_CHECKING:
    from corral.proxy.engine import Engine
    from corral.proxy.routing import Router
    from corral.proxy.upstream_conn import UpstreamConnection

# Why reading from the client is paused (a bit mask: reading resumes when all are clear).
_PAUSE_BACKPRESSURE: Final = 1  # the upstream cannot take more
_PAUSE_QUEUE: Final = 2  # a pipelined request waits for the one before it
_PAUSE_EXCHANGE: Final = 4  # body bytes wait for an upstream connection
_PAUSE_UPGRADE: Final = 8  # waiting for the upstream's answer to an Upgrade


class ClientConnection(Http1Writer, asyncio.Protocol):
    """One client connection on a listener."""

    protocol = "HTTP/1.1"
    __slots__ = (
        "client_ip",
        "closed",
        "engine",
        "exchange",
        "head_size",
        "head_started",
        "headers",
        "held",
        "input_ended",
        "last_active",
        "max_header_size",
        "parse_over",
        "parser",
        "parsing",
        "pause_mask",
        "queue",
        "router",
        "transport",
        "trusted",
        "tunnel",
        "tunnel_timeout",
        "upgrade_declined",
        "url",
        "write_paused_since",
    )

    def __init__(self, engine: Engine, router: Router) -> None:
        self.engine = engine
        self.router = router
        self.max_header_size = engine.max_header_size  # read per header: kept here
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.parser: httptools.HttpRequestParser | None = None  # made when the first bytes come
        self.parse_over = False  # no more requests are parsed on this connection
        self.client_ip = b"-"
        self.trusted = False  # the peer is a trusted proxy: its X-Forwarded-Proto/-Port stay
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_started = 0.0
        self.last_active = 0.0
        self.parsing: Exchange | None = None
        self.exchange: Exchange | None = None
        self.queue: deque[Exchange] | None = None
        self.pause_mask = 0
        self.write_paused_since = 0.0
        self.batch_depth = 0
        self.out: list[bytes] = []
        self.close_pending = False
        self.closed = False
        self.tunnel: UpstreamConnection | None = None
        self.tunnel_timeout = 0.0
        self.held: bytes | None = None
        self.input_ended = False
        self.upgrade_declined = False  # llhttp will report an upgrade the proxy refused

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = self.transport = cast(asyncio.Transport, transport)  # uvloop's: duck
        engine = self.engine
        if len(engine.clients) >= engine.max_connections:
            engine.note_error("worker_connections are not enough: closing a new connection")
            self.closed = True
            transport.abort()
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self.closed = True  # the HTTP/2 connection owns the transport from here on
            Http2Connection(engine, self.router).take_over(transport)
            return
        engine.clients.add(self)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = peer[0].encode()
            if engine.trusted_proxies is not None:
                self.trusted = engine.trusted_proxies.trusts(peer[0])
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        self.head_started = self.last_active = engine.now

    def data_received(self, data: bytes) -> None:
        self.last_active = self.engine.now
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.transport.write(data)
            return
        if self.held is not None:  # bytes after an Upgrade request, before the upstream answered
            self.held += data
            return
        parser = self.parser
        if parser is None:
            if self.parse_over or self.close_pending:
                return
            # Made on first use: a connection that never sends a request (an idle TLS
            # connection a browser keeps in reserve) costs no parser.
            parser = self.parser = httptools.HttpRequestParser(self)
        elif self.close_pending:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            if self.upgrade_declined:  # served as an ordinary request: parse what follows
                self.upgrade_declined = False
                if rest:
                    self.data_received(rest)
                return
            self.held = rest
            self._pause(_PAUSE_UPGRADE)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestRejected):
                self._reject(cause.status.because(cause.detail))
            else:
                self.engine.note_error(f"internal error on a client connection: {cause!r}")
                self.abort()
        except httptools.HttpParserError as exc:
            self._reject(BAD_REQUEST.because(f"malformed request: {exc}"))

    def eof_received(self) -> bool | None:
        # A half-closed client may still want its response (HTTP/1.0-style), but not in a tunnel.
        self.input_ended = True
        return self.exchange is not None and self.tunnel is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.engine.clients.discard(self)
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel = None
            tunnel.close_tunnel()
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.client_gone()
        self.queue = None
        # The parser holds this connection for its callbacks; httptools' parser is not seen by
        # the cycle collector, so the pair would otherwise live on (~40 KiB per closed TLS
        # connection).
        self.parser = None
        self.parse_over = True

    def pause_writing(self) -> None:
        self.write_paused_since = self.engine.now
        upstream = self._upstream()
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused_since = 0.0
        upstream = self._upstream()
        if upstream is not None:
            upstream.resume_reading()
        exchange = self.exchange
        if exchange is not None:
            exchange.upstream_last = self.engine.now

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        if not self.head_started:
            self.head_started = self.engine.now

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_header_size:
            raise RequestRejected(URI_TOO_LONG, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size + len(self.url) > self.max_header_size:
            raise RequestRejected(HEADERS_TOO_LARGE, "the request header section is too large")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        self.head_started = 0.0
        method: bytes = parser.get_method()
        http10 = parser.get_http_version() == "1.0"
        target, host, chunked, has_body = read_request_head(
            method, self.url, self.headers, http10=http10
        )
        route = self.router.route(host)
        upgrade: bytes | None = None
        if parser.should_upgrade():
            upgrade = forwarding.requested_upgrade(self.headers, pass_h2c=route.pass_h2c_upgrade)
            if upgrade is None:  # only h2c was asked for: refused, the request is served as is
                if has_body:  # llhttp would not parse its body
                    raise RequestRejected(
                        BAD_REQUEST, "Upgrade: h2c is refused, and with a body it cannot be served"
                    )
                self.upgrade_declined = True
            else:
                has_body = True  # dispatch now: the rest of the connection belongs to the tunnel
        if route.pool is None:  # a redirect server: Exchange.start answers it
            head = b""
        else:
            head = forwarding.build_upstream_head(
                method,
                target,
                self.headers,
                host=host if host is not None else route.default_host,
                client_ip=self.client_ip,
                listener_lines=forwarding.trusted_forwarded_lines(
                    self.headers, route.scheme, route.port
                )
                if self.trusted
                else route.listener_lines,
                upgrade=upgrade,
                chunked=chunked,
            )
        exchange = Exchange(
            self, route, method, target, head, chunked=chunked, upgrade=upgrade, http10=http10
        )
        exchange.keep_alive = parser.should_keep_alive()
        self.parsing = exchange
        if has_body:
            self._dispatch(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is not None and not exchange.response_done:
            exchange.send_body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        parser = self.parser
        if exchange is None or parser is None:
            return
        self.parsing = None
        exchange.keep_alive = parser.should_keep_alive()
        exchange.request_complete()
        dispatched = exchange is self.exchange or (self.queue and exchange in self.queue)
        if not dispatched and not exchange.response_done:
            self._dispatch(exchange)

    # -- running exchanges -----------------------------------------------------------------------
    def _dispatch(self, exchange: Exchange) -> None:
        if self.exchange is None:
            self.exchange = exchange
            exchange.start()
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(exchange)
            self._pause(_PAUSE_QUEUE)

    def exchange_finished(self, exchange: Exchange, *, close: bool) -> None:
        """Called by the exchange when its response is complete (or failed)."""
        if self.exchange is exchange:
            self.exchange = None
        if close or self.closed or self.input_ended:
            self._close_soon()
            return
        self.last_active = self.engine.now
        queue = self.queue
        if queue:
            following = queue.popleft()
            self.exchange = following
            following.start()
        if not queue:
            self._resume(_PAUSE_QUEUE)

    def become_tunnel(self, upstream: UpstreamConnection, upstream_rest: bytes) -> None:
        """After a 101: relay raw bytes both ways until either side closes or idles out."""
        self.tunnel_timeout = self.exchange.route.read_timeout if self.exchange else 0.0
        self.exchange = None
        self.tunnel = upstream
        self.last_active = self.engine.now
        held, self.held = self.held, None
        upstream.open_tunnel(self, upstream_rest, held or b"")
        self._resume(_PAUSE_UPGRADE)

    def tunnel_closed(self) -> None:
        """The upstream half of the tunnel closed: close ours once written out."""
        self.tunnel = None
        self._close_soon()

    # -- flow control ----------------------------------------------------------------------------
    def _pause(self, reason: int) -> None:
        if not self.pause_mask and not self.closed:
            self.transport.pause_reading()
        self.pause_mask |= reason

    def _resume(self, reason: int) -> None:
        if not self.pause_mask & reason:
            return
        self.pause_mask &= ~reason
        if not self.pause_mask and not self.closed:
            self.transport.resume_reading()

    def pause_reading_for_backpressure(self) -> None:
        """The upstream's write buffer is full."""
        self._pause(_PAUSE_BACKPRESSURE)

    def resume_reading_for_backpressure(self) -> None:
        """The upstream drained its write buffer."""
        self._resume(_PAUSE_BACKPRESSURE)

    def pause_reading_for_exchange(self) -> None:
        """Body bytes wait for an upstream connection."""
        self._pause(_PAUSE_EXCHANGE)

    def resume_reading_for_exchange(self) -> None:
        """An upstream connection was attached."""
        self._resume(_PAUSE_EXCHANGE)

    def _upstream(self) -> UpstreamConnection | None:
        if self.tunnel is not None:
            return self.tunnel
        exchange = self.exchange
        return exchange.upstream if exchange is not None else None

    # -- errors and timers -----------------------------------------------------------------------
    def _reject(self, status: ProxyStatus) -> None:
        """Answer malformed input with `status` and close (after the request in flight)."""
        parsing = self.parsing
        exchange = self.exchange
        self.engine.note_error(f"rejected request from {self.client_ip.decode()}: {status.detail}")
        if exchange is not None and parsing is exchange and not exchange.response_started:
            exchange.abort()  # its body was broken mid-way: the upstream saw half a request
            self.exchange = None
            exchange = None
        self.parsing = None
        if exchange is not None:  # an earlier request is still running: answer it, then close
            exchange.keep_alive = False
            self.queue = None
            self.parser = None
            self.parse_over = True
            return
        self.parser = None
        self.parse_over = True
        self.send(forwarding.error_response(status.code, status.reason, status.detail, close=True))
        self.engine.log_rejected(self.client_ip, status.code)
        self._close_soon()

    def check_timers(self, now: float) -> None:
        """Enforce the timeouts; called by the engine's periodic sweep."""
        if self.closed:
            return
        tunnel = self.tunnel
        exchange = self.exchange
        if tunnel is not None:
            if now - max(self.last_active, tunnel.last_active) > self.tunnel_timeout:
                self.transport.close()
                tunnel.close()
        elif exchange is not None:
            route = exchange.route
            if self.write_paused_since:
                if now - self.write_paused_since > route.send_timeout:
                    self.engine.note_error(f"client {self.client_ip.decode()} stopped reading")
                    self.abort()
            elif (
                exchange.upstream is not None
                and not exchange.response_done
                and now - exchange.upstream_last > route.read_timeout
            ):
                exchange.on_timeout()
        elif self.head_started:
            if now - self.head_started > self.engine.client_header_timeout:
                self.parsing = None
                self.parser = None
                self.parse_over = True
                self.send(
                    forwarding.error_response(
                        REQUEST_TIMEOUT.code,
                        REQUEST_TIMEOUT.reason,
                        "the request head did not arrive in time",
                        close=True,
                    )
                )
                self.engine.log_rejected(self.client_ip, REQUEST_TIMEOUT.code)
                self._close_soon()
        elif now - self.last_active > (
            DRAIN_IDLE_CLOSE_S if self.engine.draining else self.engine.keepalive_timeout
        ):
            self.transport.close()
