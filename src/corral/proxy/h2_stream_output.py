"""The sending half of an HTTP/2 stream: whole responses, DATA within the client's
flow-control windows, END_STREAM (on the last DATA frame or on trailers), and the backpressure
that stops reading the upstream while the client's window or socket is full."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from corral.proxy.h2_fields import Fields, local_fields

if TYPE_CHECKING:
    from corral.proxy.engine import Engine
    from corral.proxy.exchange import Exchange
    from corral.proxy.http2 import Http2Connection
    from corral.proxy.routing import ServerRoute
    from corral.proxy.upstream_conn import UpstreamConnection


class H2StreamOutput:
    """Mixed into `H2Stream`: what it sends to the client, and when it must wait."""

    __slots__ = ("blocked_since", "ended", "out", "out_end", "out_trailers")
    blocked_since: float  # when the output started waiting for the client (0: not waiting)
    conn: Http2Connection
    ended: bool  # END_STREAM (or RST_STREAM) is on its way to the client
    engine: Engine
    exchange: Exchange | None
    out: deque[bytes]  # DATA waiting for window (at most one upstream read)
    out_end: bool  # END_STREAM follows `out`
    out_trailers: Fields | None
    reset: bool
    route: ServerRoute
    stream_id: int
    tunnel: UpstreamConnection | None

    def _maybe_done(self) -> None:
        raise NotImplementedError  # H2Stream's

    def _send_whole(
        self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes, length: int = -1
    ) -> None:
        policy = self.route.response_headers
        if policy is not None:
            headers = policy.local(headers)
        fields = local_fields(status, headers, len(body) if length < 0 else length)
        self.conn.send_headers(self.stream_id, fields, end=not body)
        if body:
            self._send_data(body)
            self._end_output(None)
        else:
            self.ended = True

    def _send_data(self, data: bytes, *, end: bool = False) -> None:
        if self.out or self.conn.write_paused:
            sent = 0
        else:
            sent = self.conn.send_data(self.stream_id, data, end=end)
            if self.reset:  # h2 refused it and the stream was reset
                return
        if sent < len(data):
            self.out.append(data[sent:] if sent else data)
            self.out_end = self.out_end or end
            self._block()
        elif end:
            self.ended = True

    def _end_output(self, trailers: Fields | None) -> None:
        if self.out:
            self.out_end = True
            self.out_trailers = trailers
            return
        self.ended = True
        self.conn.end_stream(self.stream_id, trailers)

    def flush(self) -> None:
        """The window grew or the socket drained: send what waits, then read upstream again."""
        out = self.out
        conn = self.conn
        while out and not conn.write_paused and not self.reset:
            data = out[0]
            sent = conn.send_data(self.stream_id, data)
            if self.reset:  # h2 refused it and the stream was reset
                return
            if sent < len(data):
                out[0] = data[sent:]
                return
            out.popleft()
        if out or self.reset:
            return
        if self.out_end:
            self.out_end = False
            self.ended = True
            conn.end_stream(self.stream_id, self.out_trailers)
            self.out_trailers = None
        if self.blocked_since:
            self.blocked_since = 0.0
            upstream = self._upstream()
            if upstream is not None:
                upstream.resume_reading()
            if self.exchange is not None:
                self.exchange.upstream_last = self.engine.now
        self._maybe_done()

    def _block(self) -> None:
        if not self.blocked_since:
            self.blocked_since = self.engine.now
        upstream = self._upstream()
        if upstream is not None:
            upstream.pause_reading()

    def _upstream(self) -> UpstreamConnection | None:
        if self.tunnel is not None:
            return self.tunnel
        return self.exchange.upstream if self.exchange is not None else None
