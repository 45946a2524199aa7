"""A blocking HTTP/2 test client on an ssl socket: the h2 library for the protocol, plus raw
frames (hyperframe) for what a well-behaved client never sends."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import h2.events
import h2.exceptions
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.settings import SettingCodes
from hyperframe.frame import Frame, GoAwayFrame

from tests.e2e.lb.harness import SERVER_NAME, Certs

IO_TIMEOUT = 30.0
Headers = list[tuple[bytes, bytes]]


@dataclass
class StreamResult:
    """What came back on one stream."""

    headers: Headers = field(default_factory=list)
    informational: list[Headers] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers = field(default_factory=list)
    ended: bool = False
    reset_code: int | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class GracefulGoawayH2(H2Connection):
    """h2 treats any GOAWAY as the end of the connection; RFC 9113 §6.8 lets the streams up to
    its last_stream_id finish after a NO_ERROR one, which is what the shutdown tests check."""

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Any]]:
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = ConnectionState.CLIENT_OPEN
        return frames, events


class ConnectionClosed(Exception):
    """The server closed the TCP connection."""


class H2Client:
    """One HTTP/2 connection to the lb; events are collected per stream as they arrive."""

    def __init__(
        self,
        certs: Certs,
        port: int,
        *,
        settings: dict[int, int] | None = None,
        auto_ack: bool = True,
        send_preface: bool = True,
    ) -> None:
        context = certs.client_context(alpn=["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock: ssl.SSLSocket = context.wrap_socket(raw, server_hostname=SERVER_NAME)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.authority = f"{SERVER_NAME}:{port}".encode()
        self.conn = GracefulGoawayH2(H2Configuration(client_side=True, header_encoding=None))
        self.auto_ack = auto_ack
        self.streams: dict[int, StreamResult] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.remote_settings_seen = False
        self.closed = False
        if send_preface:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()

    # -- sending -----------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_frames(self, frames: Iterable[Frame]) -> None:
        """Raw frames, straight to the socket (h2's view of the connection is not updated)."""
        self.flush()
        self.sock.sendall(b"".join(frame.serialize() for frame in frames))

    def request_headers(
        self, path: str, method: str = "GET", extra: Headers | None = None
    ) -> Headers:
        return [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", path.encode()),
            *(extra or []),
        ]

    def start(
        self,
        path: str,
        method: str = "GET",
        extra: Headers | None = None,
        *,
        end: bool = True,
        headers: Headers | None = None,
    ) -> int:
        """Open a stream; returns its id."""
        stream_id = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = StreamResult()
        block = headers if headers is not None else self.request_headers(path, method, extra)
        self.conn.send_headers(stream_id, block, end_stream=end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, data: bytes, *, end: bool = False) -> int:
        """Send as much of `data` as the windows allow now; returns the bytes sent."""
        window = min(self.conn.local_flow_control_window(stream_id), len(data))
        frame = self.conn.max_outbound_frame_size
        for start in range(0, window, frame):
            self.conn.send_data(stream_id, data[start : min(start + frame, window)])
        if end and window == len(data):
            self.conn.end_stream(stream_id)
        self.flush()
        return window

    def send_all(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send all of `data`, waiting for WINDOW_UPDATEs as needed."""
        view = memoryview(data)
        while True:
            sent = self.send_body(stream_id, bytes(view), end=end)
            view = view[sent:]
            if not view:
                return
            self.receive_once()

    # -- receiving ---------------------------------------------------------------------------
    def receive_once(self, timeout: float = IO_TIMEOUT) -> bool:
        """Read once and handle the events; False when nothing came within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, ssl.SSLError) as exc:
            self.closed = True
            raise ConnectionClosed(str(exc)) from exc
        if not data:
            self.closed = True
            raise ConnectionClosed("EOF")
        for event in self.conn.receive_data(data):
            self._handle(event)
        self.flush()
        return True

    def _handle(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", 0)
        result = self.streams.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived) and result is not None:
            result.headers = list(event.headers)
        elif isinstance(event, h2.events.InformationalResponseReceived) and result is not None:
            result.informational.append(list(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            if result is not None:
                result.body += event.data or b""
            if self.auto_ack and event.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.TrailersReceived) and result is not None:
            result.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and result is not None:
            result.ended = True
        elif isinstance(event, h2.events.StreamReset) and result is not None:
            result.reset_code = int(event.error_code)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    def wait(self, condition: Callable[[], bool], timeout: float = IO_TIMEOUT) -> None:
        """Receive until `condition()` holds (AssertionError if the connection ends first)."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting on the HTTP/2 connection"
            self.receive_once(min(left, IO_TIMEOUT))

    def response(self, stream_id: int, timeout: float = IO_TIMEOUT) -> StreamResult:
        """Wait until the stream ends (or is reset) and return what came."""
        result = self.streams[stream_id]
        self.wait(lambda: result.ended or result.reset_code is not None, timeout)
        return result

    def wait_goaway(self, timeout: float = IO_TIMEOUT) -> h2.events.ConnectionTerminated:
        """Receive until GOAWAY arrives (or the connection closes right after one)."""
        with contextlib.suppress(ConnectionClosed):
            self.wait(lambda: self.terminated is not None, timeout)
        assert self.terminated is not None, "the connection closed without GOAWAY"
        return self.terminated

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> None:
        """Read until the server closes the connection."""
        with contextlib.suppress(ConnectionClosed):
            self.wait(lambda: False, timeout)
        assert self.closed

    def remote_setting(self, code: SettingCodes) -> int:
        self.wait(lambda: self.remote_settings_seen)
        return int(self.conn.remote_settings[code])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
