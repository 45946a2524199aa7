"""A downstream HTTP/2 connection (h2): settings, limits, flood defences, flow control, GOAWAY.

`ClientConnection` hands its transport over when ALPN chose `h2`. Bytes go through the
`FrameGuard` (rapid reset, CONTINUATION and PING/SETTINGS floods → GOAWAY ENHANCE_YOUR_CALM)
and then into the h2 state machine; its events drive one `H2Stream` per request. Exchanges of
a batch of frames start only after the loop iteration's reads (so a stream opened and reset in
the same read never reaches an upstream, and responses read in the same iteration hand their
upstream connections back first). Frames leave in one write per batch. On shutdown or reload
the connection sends GOAWAY, lets open streams finish and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, cast

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from corral.proxy.constants import DRAIN_IDLE_CLOSE_S, WRITE_HIGH_WATER_BYTES
from corral.proxy.h2_fields import parse_request
from corral.proxy.h2_frames import H2FrameWriter
from corral.proxy.h2_guard import FloodLimits, FrameGuard
from corral.proxy.h2_machine import RequestMalformed, ServerH2Connection, without_values
from corral.proxy.h2_stream import H2Stream
from corral.proxy.tls import requested_server_name

if TYPE_CHECKING:
    from h2.events import Event

    from corral.proxy.engine import Engine
    from corral.proxy.exchange import Exchange
    from corral.proxy.routing import Router
    from corral.proxy.upstream_conn import UpstreamConnection

DEFAULT_WINDOW_BYTES = 65535  # RFC 9113 §6.9.2, the connection window before any WINDOW_UPDATE
# Header lists up to the advertised limit are served; up to this multiple of it they get 431;
# larger ones (and larger header blocks) are a connection error.
HARD_HEADER_LIMIT_FACTOR = 2


class Http2Connection(H2FrameWriter, asyncio.Protocol):
    """One client connection speaking HTTP/2."""

    __slots__ = (
        "client_ip",
        "closed",
        "dead",
        "engine",
        "goaway_last_stream",
        "goaway_sent",
        "guard",
        "h2",
        "last_active",
        "max_header_list_size",
        "router",
        "server",
        "starting",
        "streams",
        "transport",
        "trusted",
        "write_paused",
        "write_paused_since",
    )

    def __init__(self, engine: Engine, router: Router) -> None:
        self.engine = engine
        self.router = router
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        settings = engine.config.http2
        self.max_header_list_size = settings.max_header_list_size
        hard_limit = HARD_HEADER_LIMIT_FACTOR * settings.max_header_list_size
        self.guard = FrameGuard(
            FloodLimits(
                max_header_block_bytes=hard_limit,
                max_resets_per_second=settings.max_resets_per_second,
                max_control_frames_per_second=settings.max_control_frames_per_second,
            )
        )
        h2 = self.h2 = ServerH2Connection()
        h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        h2.decoder.max_header_list_size = hard_limit
        self.client_ip = b"-"
        self.trusted = False  # the peer is a trusted proxy: its X-Forwarded-Proto/-Port stay
        self.server = router.default  # the server block the connection belongs to (by SNI)
        self.streams: dict[int, H2Stream] = {}
        self.tails: list[H2Stream] = []  # streams holding back a body piece until end_batch
        self.batch_depth = 0
        self.write_paused = False
        self.write_paused_since = 0.0
        self.last_active = engine.now
        self.goaway_sent = False
        self.goaway_last_stream = 0
        self.closed = False  # the transport is gone
        self.dead = False  # no more frames are produced (closing or closed)
        self.flush_handle: asyncio.Handle | None = None
        self.starting: list[H2Stream] = []  # opened streams whose exchanges start next
        self.queued_bytes = 0  # DATA handed to h2 since the last write

    def take_over(self, transport: asyncio.BaseTransport) -> None:
        """Become the protocol of a transport whose TLS handshake chose `h2`."""
        transport.set_protocol(self)
        self.connection_made(transport)

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = self.transport = cast(asyncio.Transport, transport)
        self.engine.clients.add(self)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = peer[0].encode()
            trusted_proxies = self.engine.trusted_proxies
            if trusted_proxies is not None:
                self.trusted = trusted_proxies.trusts(peer[0])
        server_name = requested_server_name(transport.get_extra_info("ssl_object"))
        if server_name:
            self.server = self.router.route(server_name.encode())
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        h2 = self.h2
        h2.initiate_connection()
        window = self.engine.config.http2.initial_window_size
        if window > DEFAULT_WINDOW_BYTES:
            h2.increment_flow_control_window(window - DEFAULT_WINDOW_BYTES)
        self._write()

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        engine = self.engine
        self.last_active = engine.now
        problem = self.guard.feed(data, engine.loop.time())
        if problem is not None:
            self.calm_down(problem)
            return
        try:
            events = self.h2.receive_data(data)
        except H2Error as exc:  # h2 has queued GOAWAY with the right code
            engine.note_error(
                f"HTTP/2 protocol error from {self.client_ip.decode()}: {without_values(exc)}"
            )
            self._close()
            return
        self.batch_depth += 1
        try:
            self._handle(events)
        except Exception as exc:  # a bug must cost this connection only
            engine.note_error(f"internal error on an HTTP/2 connection: {exc!r}")
            self.abort()
        finally:
            self.end_batch()

    def eof_received(self) -> bool | None:
        # HTTP/2 has no half-closed connection: the client is gone, and so are its streams
        # (the TLS shutdown that follows can take a while; nothing more is written meanwhile).
        self._close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.dead = True
        self.engine.clients.discard(self)
        self._drop_streams()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_paused_since = self.engine.now

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_paused_since = 0.0
        self.begin_batch()
        try:
            self._flush_all()
        finally:
            self.end_batch()

    # -- what the engine sees (the same names as ClientConnection) --------------------------------
    @property
    def exchange(self) -> Exchange | None:
        """An exchange in flight on this connection, if any."""
        for stream in self.streams.values():
            if stream.exchange is not None:
                return stream.exchange
        return None

    @property
    def tunnel(self) -> UpstreamConnection | None:
        """A WebSocket tunnel open on this connection, if any."""
        for stream in self.streams.values():
            if stream.tunnel is not None:
                return stream.tunnel
        return None

    def announce_shutdown(self) -> None:
        """GOAWAY (NO_ERROR): no new streams; open ones finish, then the connection closes."""
        if self.goaway_sent or self.dead:
            return
        self.goaway_sent = True
        self.goaway_last_stream = self.h2.highest_inbound_stream_id
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.goaway_last_stream
        frame.error_code = ErrorCodes.NO_ERROR
        self._write()  # what h2 has queued goes first
        if not self.transport.is_closing():
            self.transport.write(frame.serialize())
        if not self.streams:
            self._close()

    def calm_down(self, problem: str) -> None:
        """GOAWAY (ENHANCE_YOUR_CALM) and close: the client abuses the protocol."""
        if self.dead:
            return
        self.engine.note_error(f"HTTP/2 client {self.client_ip.decode()}: {problem}; GOAWAY")
        with contextlib.suppress(H2Error):  # h2 may have closed already
            self.h2.close_connection(
                error_code=ErrorCodes.ENHANCE_YOUR_CALM, additional_data=problem.encode()
            )
        self._close()

    def abort(self) -> None:
        """Drop the connection at once."""
        self.dead = True
        if not self.closed:
            self.transport.abort()
        self._drop_streams()

    def check_timers(self, now: float) -> None:
        """Timeouts of the streams, the socket, a half-sent header block and idleness."""
        if self.dead:
            return
        engine = self.engine
        if self.write_paused_since and now - self.write_paused_since > self._send_timeout():
            engine.note_error(f"HTTP/2 client {self.client_ip.decode()} stopped reading")
            self.abort()
            return
        started = self.guard.block_started
        if started and now - started > engine.client_header_timeout:
            self.calm_down("a header block did not complete within client_header_timeout")
            return
        for stream in list(self.streams.values()):
            stream.check_timers(now)
        if not self.streams and not self.dead:
            idle = DRAIN_IDLE_CLOSE_S if engine.draining else engine.keepalive_timeout
            if now - self.last_active > idle:
                self.announce_shutdown()
                self._close()

    def _send_timeout(self) -> float:
        # The connection's socket is shared by its streams, whichever server each one uses: the
        # server block chosen by SNI (NGINX's virtual server of the connection) decides.
        return self.server.send_timeout

    # -- events ----------------------------------------------------------------------------------
    def _handle(self, events: list[Event]) -> None:
        streams = self.streams
        opened: list[H2Stream] = []
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                data = cast(DataReceived, event)
                stream = streams.get(data.stream_id)
                if stream is not None:
                    stream.receive_data(data.data or b"", data.flow_controlled_length or 0)
                elif data.flow_controlled_length:
                    self.acknowledge(data.stream_id, data.flow_controlled_length)
            elif kind is RequestReceived:
                request = cast(RequestReceived, event)
                stream = self._open_stream(request)
                if stream is not None:
                    opened.append(stream)
            elif kind is StreamEnded:
                stream = streams.get(cast(StreamEnded, event).stream_id)
                if stream is not None and not stream.remote_ended:  # else: ended with its head
                    stream.remote_end()
            elif kind is StreamReset:
                stream = streams.get(cast(StreamReset, event).stream_id)
                if stream is not None:
                    stream.drop()
            elif kind is WindowUpdated:
                stream_id = cast(WindowUpdated, event).stream_id
                if not stream_id:
                    self._flush_all()
                else:
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream.flush()
            elif kind is RemoteSettingsChanged:
                if (
                    SettingCodes.INITIAL_WINDOW_SIZE
                    in cast(RemoteSettingsChanged, event).changed_settings
                ):
                    self._flush_all()
            elif kind is RequestMalformed:  # h2_machine has reset the stream
                malformed = cast(RequestMalformed, event)
                stream = streams.get(malformed.stream_id)
                if stream is not None:
                    stream.malformed(malformed.detail)
                else:
                    self._log_malformed(malformed.stream_id, malformed.detail)
            elif kind is TrailersReceived:  # dropped, unless they break the rules
                trailers = cast(TrailersReceived, event)
                if any(name[:1] == b":" for name, _ in trailers.headers or ()):
                    self.reset_stream(trailers.stream_id, ErrorCodes.PROTOCOL_ERROR)
                    stream = streams.get(trailers.stream_id)
                    if stream is not None:
                        stream.malformed("a pseudo-header in trailers")
            elif kind is ConnectionTerminated:  # the client's GOAWAY: h2 accepts nothing more
                self._close()
                return
        # Started once this loop iteration's reads are done: a stream opened and reset within
        # them costs no upstream work, and upstream connections that responses of this
        # iteration hand back to the keep-alive pool serve these requests instead of new ones.
        if opened:
            if self.starting:
                self.starting += opened
            else:
                self.starting = opened
                self.engine.loop.call_soon(self._start_exchanges)

    def _start_exchanges(self) -> None:
        opened, self.starting = self.starting, []
        if self.dead:
            return
        self.begin_batch()
        try:
            for stream in opened:
                exchange = stream.exchange
                if exchange is not None and not stream.reset:
                    exchange.start()
        except Exception as exc:  # a bug must cost this connection only
            self.engine.note_error(f"internal error on an HTTP/2 connection: {exc!r}")
            self.abort()
        finally:
            self.end_batch()

    def _open_stream(self, event: RequestReceived) -> H2Stream | None:
        stream_id = event.stream_id
        if self.goaway_sent and stream_id > self.goaway_last_stream:
            self.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        request = parse_request(event.headers)
        if request.malformed is not None:  # RFC 9113 §8.1.1: a stream error
            self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self._log_malformed(stream_id, request.malformed)
            return None
        stream = H2Stream(self, stream_id, self.router.default)
        self.streams[stream_id] = stream
        exchange = stream.open(request, event.stream_ended is not None)
        return stream if exchange is not None else None

    def _log_malformed(self, stream_id: int, detail: str) -> None:
        self.engine.note_error(
            f"malformed HTTP/2 request from {self.client_ip.decode()} on stream {stream_id}: "
            f"{detail}; RST_STREAM"
        )
        self.engine.log_rejected(self.client_ip, 400, "HTTP/2.0")

    def _flush_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.out or stream.out_end:
                stream.flush()

    # -- what streams call (the rest is H2FrameWriter's) -------------------------------------
    def release(self, stream: H2Stream) -> None:
        """A stream is over; after GOAWAY the last one closes the connection."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.last_active = self.engine.now
            if not self.streams and self.goaway_sent:
                self._close()

    # -- closing ---------------------------------------------------------------------------------
    def _close(self) -> None:
        """Write what is queued, close, and abandon the streams."""
        if self.dead:
            return
        self._write()
        self.dead = True
        if not self.closed:
            self.transport.close()
        self._drop_streams()

    def _drop_streams(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.drop()
