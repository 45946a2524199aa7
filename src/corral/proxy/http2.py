"""A downstream HTTP/2 connection (h2): settings, limits, flood defences, flow control, GOAWAY.

`ClientConnection` hands its transport over when ALPN chose `h2`. Bytes go through the
`FrameGuard` (rapid reset, CONTINUATION and PING/SETTINGS floods → GOAWAY ENHANCE_YOUR_CALM)
and then into the h2 state machine; its events drive one `H2Stream` per request. Exchanges of
a batch of frames start only after the whole batch was read, so a stream opened and reset in the
same read never reaches an upstream. Frames leave in one write per batch. On shutdown or reload
the connection sends GOAWAY, lets open streams finish and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from corral.proxy.h2_fields import Fields, parse_request
from corral.proxy.h2_guard import FloodLimits, FrameGuard
from corral.proxy.h2_stream import H2Stream

if TYPE_CHECKING:
    from h2.events import Event

    from corral.proxy.engine import Engine
    from corral.proxy.exchange import Exchange
    from corral.proxy.routing import Router
    from corral.proxy.upstream_conn import UpstreamConnection

WRITE_HIGH_WATER_BYTES = 64 * 1024
DRAIN_IDLE_CLOSE_S = 2.0  # while draining, a connection without streams closes after this
# (last_active is stamped with the engine's coarse clock, up to one tick (<= 1 s) behind: 2 s
# of it means at least 1 s of real idleness, so a client pausing briefly is not cut mid-thought)
DEFAULT_WINDOW_BYTES = 65535  # RFC 9113 §6.9.2, the connection window before any WINDOW_UPDATE
# Header lists up to the advertised limit are served; up to this multiple of it they get 431;
# larger ones (and larger header blocks) are a connection error.
HARD_HEADER_LIMIT_FACTOR = 2

_H2_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=True,
    normalize_inbound_headers=True,
    validate_outbound_headers=False,  # the streams build lower-case, connection-free fields
    normalize_outbound_headers=False,
)


def without_values(error: Exception) -> str:
    """h2's message for `error`, cut before any header value it quotes (values may carry
    credentials, which never reach a log)."""
    text = str(error)
    cut = text.find(" value")
    return text[: cut + len(" value")] + " (not logged)" if cut >= 0 else text


class Http2Connection(asyncio.Protocol):
    """One client connection speaking HTTP/2."""

    __slots__ = (
        "batch_depth",
        "client_ip",
        "closed",
        "dead",
        "engine",
        "flush_handle",
        "goaway_last_stream",
        "goaway_sent",
        "guard",
        "h2",
        "last_active",
        "max_header_list_size",
        "queued_bytes",
        "router",
        "streams",
        "tails",
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
        h2 = self.h2 = H2Connection(config=_H2_CONFIG)
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
        return self.router.default.send_timeout

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
                if stream is not None:
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
            elif kind is ConnectionTerminated:  # the client's GOAWAY: h2 accepts nothing more
                self._close()
                return
        # Started only now: a stream opened and reset within one read costs no upstream work.
        for stream in opened:
            exchange = stream.exchange
            if exchange is not None and not stream.reset:
                exchange.start()

    def _open_stream(self, event: RequestReceived) -> H2Stream | None:
        stream_id = event.stream_id
        if self.goaway_sent and stream_id > self.goaway_last_stream:
            self.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        stream = H2Stream(self, stream_id, self.router.default)
        self.streams[stream_id] = stream
        exchange = stream.open(parse_request(event.headers), event.stream_ended is not None)
        return stream if exchange is not None else None

    def _flush_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.out or stream.out_end:
                stream.flush()

    # -- what streams call -----------------------------------------------------------------------
    def send_headers(self, stream_id: int, fields: Fields, *, end: bool) -> None:
        """A HEADERS frame (informational, response or trailers)."""
        if self.dead:
            return
        try:
            self.h2.send_headers(stream_id, fields, end_stream=end)
        except H2Error as exc:
            self.engine.note_error(f"HTTP/2 stream {stream_id}: cannot send headers: {exc}")
            return
        self._output()

    def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> int:
        """Send as much of `data` as the flow-control windows allow; returns how much. `end`:
        END_STREAM on the last frame, if all of `data` fits."""
        if self.dead:
            return len(data)  # nobody will read it
        h2 = self.h2
        try:
            size = min(h2.local_flow_control_window(stream_id), len(data))
            if size <= 0:
                return 0
            frame = h2.max_outbound_frame_size
            if size == len(data) and size <= frame:
                h2.send_data(stream_id, data, end_stream=end)
            else:
                view = memoryview(data)
                last = end and size == len(data)
                for start in range(0, size, frame):
                    stop = min(start + frame, size)
                    h2.send_data(
                        stream_id, bytes(view[start:stop]), end_stream=last and stop == size
                    )
        except H2Error:
            return len(data)  # the stream is closed: drop the rest
        self.queued_bytes += size
        if self.queued_bytes >= WRITE_HIGH_WATER_BYTES:
            self._write()  # bodies go out now, so the socket's backpressure is seen in time
        else:
            self._output()
        return size

    def end_stream(self, stream_id: int, trailers: Fields | None) -> None:
        """END_STREAM: on trailing HEADERS, or an empty DATA frame."""
        if self.dead:
            return
        try:
            if trailers:
                self.h2.send_headers(stream_id, trailers, end_stream=True)
            else:
                self.h2.end_stream(stream_id)
        except H2Error:
            return
        self._output()

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        """RST_STREAM."""
        if self.dead:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except H2Error:
            return
        self._output()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Request bytes were taken: open the client's windows again (WINDOW_UPDATE)."""
        if self.dead:
            return
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except H2Error:
            return
        self._output()

    def release(self, stream: H2Stream) -> None:
        """A stream is over; after GOAWAY the last one closes the connection."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.last_active = self.engine.now
            if not self.streams and self.goaway_sent:
                self._close()

    def begin_batch(self) -> None:
        """Collect frames until `end_batch` (one write per read)."""
        self.batch_depth += 1

    def end_batch(self) -> None:
        """Write the frames collected (at the end of this loop iteration)."""
        self.batch_depth -= 1
        if not self.batch_depth:
            if self.tails:
                tails, self.tails = self.tails, []
                for stream in tails:
                    stream.release_tail()
            self._output()

    def hold_tail(self, stream: H2Stream) -> None:
        """`stream` holds back a body piece until the batch ends."""
        self.tails.append(stream)

    # -- output ----------------------------------------------------------------------------------
    def _output(self) -> None:
        # Frames of every stream produced in one loop iteration (many upstream responses arrive
        # together under load) leave in one TLS write: the write, not h2, is the expensive part.
        if not self.batch_depth and self.flush_handle is None and not self.dead:
            self.flush_handle = self.engine.loop.call_soon(self._write)

    def _write(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        self.queued_bytes = 0
        data = self.h2.data_to_send()
        if data and not self.closed and not self.transport.is_closing():
            self.transport.write(data)

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
