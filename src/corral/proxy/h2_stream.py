"""One HTTP/2 stream as the client side of one `Exchange` (the `Downstream` interface).

The request's pseudo-headers become the same HTTP/1.1 head an HTTP/1.1 client would cause
(`forwarding.build_upstream_head`: Host from `:authority`, X-Forwarded-* as for HTTP/1.1); the
response head becomes a HEADERS frame without connection-specific fields; bodies become DATA
frames within the client's flow-control window. When the window (or the client's socket) is
full, the upstream connection stops being read, so nothing larger than one read waits here.
Request DATA is acknowledged (WINDOW_UPDATE) only once the upstream has taken it, so a slow
upstream slows the client down instead of filling memory. An RFC 8441 extended CONNECT
(`:protocol websocket`) goes upstream as an HTTP/1.1 `Upgrade: websocket` GET; its 101 becomes
`:status 200` and the stream then carries the tunnel's bytes both ways.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from corral.proxy import forwarding
from corral.proxy.exchange import Exchange
from corral.proxy.h2_fields import (
    Fields,
    H2Request,
    fields_size,
    has_field,
    request_problem,
    response_fields,
    trailer_fields,
    websocket_fields,
)
from corral.proxy.h2_stream_output import H2StreamOutput

if TYPE_CHECKING:
    from corral.proxy.errors import ProxyStatus
    from corral.proxy.http2 import Http2Connection
    from corral.proxy.routing import ServerRoute
    from corral.proxy.upstream_conn import UpstreamConnection

# Why acknowledging request DATA waits (a bit mask).
_HOLD_UPSTREAM_FULL = 1  # the upstream's write buffer is full
_HOLD_NO_UPSTREAM = 2  # the exchange keeps too much body while it waits for a connection


class H2Stream(H2StreamOutput):
    """A client's stream: the `Downstream` of its exchange, then perhaps one tunnel end."""

    protocol = "HTTP/2.0"

    __slots__ = (
        "client_ip",
        "conn",
        "discard",
        "engine",
        "exchange",
        "head_count",
        "held",
        "hold",
        "last_active",
        "remote_ended",
        "reset",
        "response_headers",
        "route",
        "stream_id",
        "tail",
        "tunnel",
        "unacked",
    )

    def __init__(self, conn: Http2Connection, stream_id: int, route: ServerRoute) -> None:
        self.conn = conn
        self.engine = conn.engine
        self.client_ip = conn.client_ip
        self.stream_id = stream_id
        self.route = route
        self.exchange: Exchange | None = None
        self.tunnel: UpstreamConnection | None = None
        self.held: list[bytes] | None = None  # tunnel bytes that came before the upstream's 101
        self.out: deque[bytes] = deque()  # DATA waiting for window (at most one upstream read)
        self.out_end = False  # END_STREAM follows `out`
        self.out_trailers: Fields | None = None
        self.tail: bytes | None = None  # the last body piece of an upstream read, see send_body
        self.ended = False  # END_STREAM (or RST_STREAM) is on its way to the client
        self.remote_ended = False
        self.reset = False
        self.discard = False  # the response body is not for the client (a declined tunnel)
        self.unacked = 0
        self.hold = 0
        self.blocked_since = 0.0
        self.last_active = conn.engine.now
        self.response_headers: Sequence[tuple[bytes, bytes]] = ()
        self.head_count = 0

    # -- the request ---------------------------------------------------------------------------
    def open(self, request: H2Request, end_stream: bool) -> Exchange | None:
        """Turn the request into an exchange (not started yet), or answer it here."""
        conn = self.conn
        self.remote_ended = end_stream
        problem = request_problem(request, conn.max_header_list_size)
        if problem is not None:
            self.reject(problem)
            return None
        fields = request.fields or []
        host = request.authority
        if host is None:
            host = next((v for n, v in fields if n == b"host"), None)
        route = self.route = conn.router.route(host)
        upgrade: bytes | None = None
        method = request.method
        chunked = False
        if request.protocol is not None:  # RFC 8441: a WebSocket over this stream
            method, upgrade = b"GET", b"websocket"
            fields = websocket_fields(fields)
            self.held = []
        elif not end_stream and not has_field(fields, b"content-length"):
            chunked = True
        if route.pool is None:
            head = b""
        else:
            head = forwarding.build_upstream_head(
                method,
                request.path,
                fields,
                host=host if host is not None else route.default_host,
                client_ip=self.client_ip,
                listener_lines=forwarding.trusted_forwarded_lines(fields, route.scheme, route.port)
                if conn.trusted
                else route.listener_lines,
                upgrade=upgrade,
                chunked=chunked,
            )
        exchange = Exchange(
            self, route, method, request.path, head, chunked=chunked, upgrade=upgrade, http10=False
        )
        self.exchange = exchange
        if end_stream or upgrade is not None:
            exchange.request_complete()
        return exchange

    def receive_data(self, data: bytes, flow_length: int) -> None:
        """Request DATA: to the upstream (or the tunnel), acknowledged once it is taken."""
        self.last_active = self.engine.now
        tunnel = self.tunnel
        exchange = self.exchange
        if tunnel is not None:
            tunnel.last_active = self.last_active
            tunnel.transport.write(data)
        elif self.held is not None:
            self.held.append(data)
        elif exchange is not None and not exchange.response_done and not exchange.request_done:
            exchange.send_body(data)
        self.unacked += flow_length
        self._acknowledge()

    def remote_end(self) -> None:
        """The client ended its side (END_STREAM)."""
        self.remote_ended = True
        tunnel = self.tunnel
        exchange = self.exchange
        if tunnel is not None:
            if tunnel.transport.can_write_eof():
                tunnel.transport.write_eof()
            else:
                tunnel.close()
        elif exchange is not None and not exchange.request_done and not exchange.response_done:
            exchange.request_complete()
        self._maybe_done()

    def _may_acknowledge(self) -> bool:
        if self.hold:
            return False
        if self.tunnel is not None:
            return True
        if self.held is not None:
            return False
        exchange = self.exchange
        if exchange is None or exchange.response_done or exchange.request_done:
            return True  # the bytes were dropped
        return exchange.upstream is not None

    def _acknowledge(self) -> None:
        if self.unacked and self._may_acknowledge():
            unacked, self.unacked = self.unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)

    # -- the Downstream interface ---------------------------------------------------------------
    def send_interim(self, exchange: Exchange, status: int, reason: bytes) -> None:
        """Relay a 1xx (100 Continue) as an informational HEADERS frame."""
        if not self.ended and not self.discard:
            self.conn.send_headers(self.stream_id, [(b":status", b"%d" % status)], end=False)

    def start_response(
        self, exchange: Exchange, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """The response head as a HEADERS frame (with END_STREAM when no body can follow)."""
        exchange.close_after = False
        if self.ended:
            return
        tunnel_wanted = self.held is not None
        self.held = None
        if tunnel_wanted and 200 <= status < 300:  # a 2xx would tell the client it is open
            self.discard = True
            exchange.status = 502
            detail = b"the upstream declined the WebSocket upgrade\n"
            self._send_whole(502, [(b"content-type", b"text/plain; charset=utf-8")], detail)
            return
        self.response_headers = headers  # upstream_conn appends the trailers to this list
        self.head_count = len(headers)
        policy = self.route.response_headers
        fields = response_fields(status, headers if policy is None else policy.apply(headers))
        no_body = exchange.head_request or status in (204, 304)
        exchange.bytes_sent += fields_size(fields)
        self.conn.send_headers(self.stream_id, fields, end=no_body)
        if no_body:
            self.ended = True

    def send_body(self, exchange: Exchange, chunk: bytes) -> None:
        """A piece of the response body. Within an upstream read the last piece waits for the
        end of that read, so that a response ending there carries END_STREAM on its last DATA
        frame (an empty DATA frame for END_STREAM costs h2 about a third of a small request)."""
        if self.ended or self.discard or self.out_end:
            return
        exchange.bytes_sent += len(chunk)
        if not self.conn.batch_depth:
            self._send_data(chunk)
            return
        if self.tail is None:
            self.conn.hold_tail(self)
        else:
            self._send_data(self.tail)
        self.tail = chunk

    def release_tail(self) -> None:
        """The upstream read is over: send the piece held back."""
        tail, self.tail = self.tail, None
        if tail is not None and not self.ended and not self.out_end:
            self._send_data(tail)

    def end_response(self, exchange: Exchange) -> None:
        """END_STREAM: on the last DATA frame, or on trailing HEADERS when the upstream sent
        trailers."""
        if self.ended or self.discard or self.out_end:
            return
        headers, count = self.response_headers, self.head_count
        trailers = trailer_fields(headers[count:]) if len(headers) > count else []
        tail, self.tail = self.tail, None
        if tail is not None:
            if not trailers:
                self._send_data(tail, end=True)
                return
            self._send_data(tail)
        self._end_output(trailers or None)

    def send_local(
        self,
        exchange: Exchange,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """A whole response made by the proxy."""
        exchange.close_after = False
        if self.ended:
            return
        self.held = None
        exchange.bytes_sent += len(body)
        self._send_whole(status, headers, b"" if exchange.head_request else body, len(body))

    def switch_protocols(
        self,
        exchange: Exchange,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        upstream: UpstreamConnection,
        rest: bytes,
    ) -> None:
        """The upstream's 101: `:status 200`, then the stream carries the tunnel."""
        self.exchange = None
        if self.ended:
            upstream.close()
            return
        policy = self.route.response_headers
        if policy is not None:
            headers = policy.apply(headers)
        self.conn.send_headers(self.stream_id, response_fields(200, headers), end=False)
        self.tunnel = upstream
        self.last_active = self.engine.now
        held, self.held = self.held, None
        upstream.open_tunnel(self, rest, b"".join(held) if held else b"")
        if self.remote_ended:
            self.remote_end()
        self._acknowledge()

    def exchange_finished(self, exchange: Exchange, *, close: bool) -> None:
        """The exchange is over: an aborted response resets the stream."""
        if self.exchange is exchange:
            self.exchange = None
        if close and not self.ended:
            self.cancel(ErrorCodes.INTERNAL_ERROR)
            return
        self._acknowledge()
        self._maybe_done()

    def begin_batch(self) -> None:
        """Collect frames until `end_batch`."""
        self.conn.begin_batch()

    def end_batch(self) -> None:
        """Write the frames collected."""
        self.conn.end_batch()

    def pause_reading_for_exchange(self) -> None:
        """The exchange holds enough body while it waits for a connection: stop acknowledging."""
        self.hold |= _HOLD_NO_UPSTREAM

    def resume_reading_for_exchange(self) -> None:
        """An upstream connection was attached."""
        self.hold &= ~_HOLD_NO_UPSTREAM
        self._acknowledge()

    def pause_reading_for_backpressure(self) -> None:
        """The upstream's write buffer is full: stop acknowledging."""
        self.hold |= _HOLD_UPSTREAM_FULL

    def resume_reading_for_backpressure(self) -> None:
        """The upstream drained its write buffer."""
        self.hold &= ~_HOLD_UPSTREAM_FULL
        self._acknowledge()

    # -- the tunnel peer (upstream_conn.TunnelPeer) ----------------------------------------------
    def send(self, data: bytes) -> None:
        """Bytes from the upstream end of the tunnel."""
        self.last_active = self.engine.now
        self._send_data(data)

    def tunnel_closed(self) -> None:
        """The upstream closed the tunnel: END_STREAM once the bytes before it are out."""
        self.tunnel = None
        if not self.ended and not self.out_end:
            self._end_output(None)
        self._maybe_done()

    # -- the end of the stream ------------------------------------------------------------------
    def reject(self, status: ProxyStatus) -> None:
        """Answer `status` without an exchange (input the proxy refuses)."""
        self.engine.note_error(f"rejected request from {self.client_ip.decode()}: {status.detail}")
        self.engine.log_rejected(self.client_ip, status.code, self.protocol)
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self._send_whole(status.code, headers, status.detail.encode() + b"\n")
        self._maybe_done()

    def _maybe_done(self) -> None:
        """Release the stream once both sides are over (a response complete before its request
        body ends the request with RST_STREAM NO_ERROR, RFC 9113 §8.1)."""
        if not self.ended or self.out or self.exchange is not None or self.tunnel is not None:
            return
        if not self.remote_ended and not self.reset:
            self.reset = True
            self.conn.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
        self.unacked, unacked = 0, self.unacked
        if unacked:
            self.conn.acknowledge(self.stream_id, unacked)
        self.conn.release(self)

    def malformed(self, detail: str) -> None:
        """The client's trailers or body broke HTTP/2's rules: h2_machine has reset the stream
        (PROTOCOL_ERROR); abandon the exchange as a bad request."""
        self.engine.note_error(
            f"malformed HTTP/2 request from {self.client_ip.decode()} on stream "
            f"{self.stream_id}: {detail}; RST_STREAM"
        )
        self.reset = True
        self.drop(status=400)

    def cancel(self, code: ErrorCodes) -> None:
        """Reset the stream from this side and drop its upstream."""
        if not self.reset:
            self.reset = True
            self.conn.reset_stream(self.stream_id, code)
        self.drop()

    def drop(self, status: int = 499) -> None:
        """The stream is gone (reset by either side, or the connection closed): abandon the
        exchange (logged with `status` if it had no answer yet) and close any upstream
        connection it holds."""
        self.reset = self.ended = True
        self.out.clear()
        self.out_end = False
        self.tail = None
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.client_gone(status)
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel = None
            tunnel.close_tunnel()
        self.held = None
        if self.unacked:
            self.unacked, unacked = 0, self.unacked
            self.conn.acknowledge(self.stream_id, unacked)
        self.conn.release(self)

    def check_timers(self, now: float) -> None:
        """send_timeout for a client that opens no window, read_timeout for the upstream and for
        an idle tunnel."""
        route = self.route
        if self.blocked_since:  # waiting for the client, not the upstream
            if now - self.blocked_since > route.send_timeout:
                self.engine.note_error(
                    f"client {self.client_ip.decode()} stopped reading HTTP/2 stream "
                    f"{self.stream_id}"
                )
                self.cancel(ErrorCodes.CANCEL)
            return
        tunnel = self.tunnel
        if tunnel is not None:
            if now - max(self.last_active, tunnel.last_active) > route.read_timeout:
                self.cancel(ErrorCodes.CANCEL)
            return
        exchange = self.exchange
        if (
            exchange is not None
            and exchange.upstream is not None
            and not exchange.response_done
            and now - exchange.upstream_last > route.read_timeout
        ):
            exchange.on_timeout()
