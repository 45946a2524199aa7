"""WebSocket clients that see every frame: over HTTP/1.1 (`Upgrade`, wsproto) and over HTTP/2
(RFC 8441 extended CONNECT, h2 carrying wsproto's frames), and the echo-then-idle exercise doctor
runs on either. The sessions only move bytes; wsproto and h2 do the protocols."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import h2.config
import h2.connection
import h2.events
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol, Opcode
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

READ_SIZE = 65536
NORMAL_CLOSURE = 1000
ABNORMAL_CLOSURE = 1006
CLOSE_WAIT_S = 1.0
Event = tuple[str, Any]  # ("text", str) | ("ping", None) | ("closed", code) | ("timeout", None)


class Session(Protocol):
    """An open WebSocket, frame by frame."""

    async def send_text(self, text: str) -> None:
        """Send one text message."""

    async def next_event(self, timeout: float) -> Event:
        """The next message, ping or close; ("timeout", None) when nothing came in time."""

    async def close(self) -> None:
        """Send a close frame, then close the connection (waiting a moment at most)."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A handshake's outcome: the session, or the status/error that refused it."""

    session: Session | None
    status: int = 0  # 101 (HTTP/1.1) or 200 (HTTP/2) when accepted, else the refusal's
    error: str = ""
    offered: bool = True  # HTTP/2: the server announced SETTINGS_ENABLE_CONNECT_PROTOCOL


async def _connect(host: str, port: int, context: ssl.SSLContext,
                   timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout
    )


def _close_writer(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


class _Session:
    """What both sessions share: reading the socket into WebSocket events, closing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: deque[Event] = deque()
        self.text: list[str] = []

    def _text(self, part: str, finished: bool) -> None:
        self.text.append(part)
        if finished:
            self.pending.append(("text", "".join(self.text)))
            self.text = []

    def _feed(self, data: bytes) -> None:
        """Hand received bytes to the protocol, queueing the events they complete."""
        raise NotImplementedError

    def _goodbye(self) -> bytes:
        """The bytes that close the WebSocket politely."""
        raise NotImplementedError

    async def next_event(self, timeout: float) -> Event:
        """The next message, ping or close (answering pings)."""
        while not self.pending:
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            except TimeoutError:
                return ("timeout", None)
            except (ConnectionError, ssl.SSLError):
                data = b""
            if not data:
                return ("closed", ABNORMAL_CLOSURE)
            try:
                self._feed(data)
            except Exception:  # wsproto's and h2's protocol errors: the socket is unusable
                return ("closed", ABNORMAL_CLOSURE)
        return self.pending.popleft()

    async def close(self) -> None:
        """Send a close frame (1000) if possible, then close the connection."""
        with contextlib.suppress(Exception):
            self.writer.write(self._goodbye())
        _close_writer(self.writer)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_WAIT_S)


class Http1Session(_Session):
    """A WebSocket over an HTTP/1.1 connection (wsproto)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: WSConnection) -> None:
        super().__init__(reader, writer)
        self.conn = conn

    async def send_text(self, text: str) -> None:
        """Send one text message."""
        self.writer.write(self.conn.send(TextMessage(data=text)))
        await self.writer.drain()

    def absorb(self) -> None:
        """Queue the events wsproto has ready."""
        for event in self.conn.events():
            if isinstance(event, TextMessage):
                self._text(event.data, event.message_finished)
            elif isinstance(event, Ping):
                self.writer.write(self.conn.send(event.response()))
                self.pending.append(("ping", None))
            elif isinstance(event, CloseConnection):
                self.pending.append(("closed", event.code))

    def _feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.absorb()

    def _goodbye(self) -> bytes:
        return self.conn.send(CloseConnection(code=NORMAL_CLOSURE))


async def open_http1(host: str, port: int, authority: str, path: str, context: ssl.SSLContext,
                     timeout: float, *, headers: list[tuple[str, str]] | None = None,
                     subprotocols: list[str] | None = None) -> Opened:
    """`GET path` with `Upgrade: websocket` on a new TLS connection (ALPN http/1.1)."""
    try:
        reader, writer = await _connect(host, port, context, timeout)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return Opened(None, error=f"cannot connect: {type(exc).__name__}: {exc}")
    conn = WSConnection(ConnectionType.CLIENT)
    extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers or []]
    writer.write(conn.send(Request(host=authority, target=path, extra_headers=extra,
                                   subprotocols=subprotocols or [])))
    deadline = time.monotonic() + timeout
    try:
        while True:
            data = await asyncio.wait_for(reader.read(READ_SIZE),
                                          max(0.01, deadline - time.monotonic()))
            if not data:
                _close_writer(writer)
                return Opened(None, error="the connection closed before the handshake ended")
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, AcceptConnection):
                    session = Http1Session(reader, writer, conn)
                    session.absorb()
                    return Opened(session, status=101)
                if isinstance(event, RejectConnection):
                    _close_writer(writer)
                    return Opened(None, status=event.status_code)
    except TimeoutError:
        _close_writer(writer)
        return Opened(None, error=f"no answer to the handshake within {timeout:g} s")
    except RemoteProtocolError as exc:
        _close_writer(writer)
        return Opened(None, error=f"a bad handshake answer: {exc}")
    except (OSError, ssl.SSLError) as exc:
        _close_writer(writer)
        return Opened(None, error=f"{type(exc).__name__}: {exc}")


class Http2Session(_Session):
    """A WebSocket on one HTTP/2 stream (RFC 8441): h2 for the stream, wsproto for frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: h2.connection.H2Connection, stream_id: int) -> None:
        super().__init__(reader, writer)
        self.conn, self.stream_id = conn, stream_id
        self.frames = FrameProtocol(client=True, extensions=[])

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def send_text(self, text: str) -> None:
        """Send one text message as DATA on the stream."""
        self.conn.send_data(self.stream_id, bytes(self.frames.send_data(text, fin=True)))
        self._flush()
        await self.writer.drain()

    def _frames(self, data: bytes) -> None:
        self.frames.receive_bytes(data)
        for frame in self.frames.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION) and isinstance(frame.payload,
                                                                                 str):
                self._text(frame.payload, frame.message_finished)
            elif frame.opcode is Opcode.PING:
                payload = frame.payload if isinstance(frame.payload, bytes) else b""
                self.conn.send_data(self.stream_id, bytes(self.frames.pong(payload)))
                self.pending.append(("ping", None))
            elif frame.opcode is Opcode.CLOSE:
                code = frame.payload[0] if isinstance(frame.payload, tuple) else None
                self.pending.append(("closed", code))

    def _ends_stream(self, event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.ConnectionTerminated):
            return True
        ending = isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
        return ending and getattr(event, "stream_id", None) == self.stream_id

    def _feed(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
                self.conn.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
                self._frames(event.data or b"")
            elif self._ends_stream(event):
                self.pending.append(("closed", ABNORMAL_CLOSURE))
        self._flush()

    def _goodbye(self) -> bytes:
        self.conn.send_data(self.stream_id, bytes(self.frames.close(NORMAL_CLOSURE)),
                            end_stream=True)
        return self.conn.data_to_send()


async def open_http2(host: str, port: int, authority: str, path: str, context: ssl.SSLContext,
                     timeout: float) -> Opened:
    """An extended CONNECT (`:protocol websocket`) on a new HTTP/2 connection, if the server
    announces SETTINGS_ENABLE_CONNECT_PROTOCOL; `offered=False` when it does not."""
    try:
        reader, writer = await _connect(host, port, context, timeout)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return Opened(None, error=f"cannot connect: {type(exc).__name__}: {exc}")
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
        _close_writer(writer)
        return Opened(None, offered=False, error="HTTP/2 not negotiated")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    deadline = time.monotonic() + timeout
    stream_id: int | None = None
    try:
        while True:
            data = await asyncio.wait_for(reader.read(READ_SIZE),
                                          max(0.01, deadline - time.monotonic()))
            if not data:
                _close_writer(writer)
                return Opened(None, error="the connection closed before the handshake ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged) and stream_id is None:
                    if conn.remote_settings.enable_connect_protocol != 1:
                        _close_writer(writer)
                        return Opened(None, offered=False,
                                      error="SETTINGS_ENABLE_CONNECT_PROTOCOL not announced")
                    stream_id = conn.get_next_available_stream_id()
                    conn.send_headers(stream_id, [
                        (":method", "CONNECT"), (":protocol", "websocket"),
                        (":scheme", "https"), (":path", path), (":authority", authority),
                        ("sec-websocket-version", "13"),
                    ])
                elif isinstance(event, h2.events.ResponseReceived) and (
                        event.stream_id == stream_id):
                    status = _status(event.headers)
                    if status != 200:
                        _close_writer(writer)
                        return Opened(None, status=status)
                    assert stream_id is not None
                    writer.write(conn.data_to_send())
                    return Opened(Http2Session(reader, writer, conn, stream_id), status=200)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    _close_writer(writer)
                    return Opened(None, error=f"the stream was reset ({event.error_code!r})")
            writer.write(conn.data_to_send())
    except TimeoutError:
        _close_writer(writer)
        return Opened(None, error=f"no answer to the extended CONNECT within {timeout:g} s")
    except (OSError, ssl.SSLError) as exc:
        _close_writer(writer)
        return Opened(None, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # h2's protocol errors
        _close_writer(writer)
        return Opened(None, error=f"HTTP/2: {type(exc).__name__}: {exc}")


def _status(headers: Any) -> int:
    for name, value in headers or ():
        if name in (":status", b":status"):
            text = value.decode() if isinstance(value, bytes) else str(value)
            return int(text) if text.isdigit() else 0
    return 0


@dataclass(frozen=True, slots=True)
class Exercise:
    """What happened to one WebSocket: an echo, an idle period, an echo after it."""

    echoed: bool = False
    error: str = ""  # the first echo's problem
    closed_after_s: float | None = None  # closed during the idle period, this long into it
    close_code: int | None = None
    pings: int = 0  # frames the server sent unasked during the idle period
    longest_silence_s: float = 0.0
    echoed_after_idle: bool = False


async def _await_echo(session: Session, text: str, timeout: float) -> tuple[bool, str, int]:
    """Send `text`; (came back, problem, pings seen meanwhile)."""
    try:
        await session.send_text(text)
    except (OSError, ssl.SSLError, LocalProtocolError) as exc:
        return (False, f"cannot send: {type(exc).__name__}: {exc}", 0)
    deadline = time.monotonic() + timeout
    pings = 0
    while True:
        kind, value = await session.next_event(max(0.01, deadline - time.monotonic()))
        if kind == "text":
            return (value == text, "" if value == text else f"echo {value!r} != {text!r}", pings)
        if kind == "ping":
            pings += 1
            continue
        if kind == "closed":
            return (False, f"closed (code {value})", pings)
        return (False, f"no echo within {timeout:g} s", pings)


async def exercise(session: Session, idle_s: float, timeout: float) -> Exercise:
    """Echo a message, stay idle `idle_s` (answering pings, noting when anything arrives),
    then echo another: the idle period is what a load balancer's read timeout cuts."""
    try:
        ok, problem, _ = await _await_echo(session, "corral doctor", timeout)
        if not ok:
            return Exercise(error=problem)
        start = last = time.monotonic()
        end = start + idle_s
        pings, longest = 0, 0.0
        while (now := time.monotonic()) < end:
            kind, value = await session.next_event(end - now)
            now = time.monotonic()
            if kind == "timeout":
                break
            longest = max(longest, now - last)
            last = now
            if kind == "closed":
                return Exercise(echoed=True, closed_after_s=now - start, close_code=value,
                                pings=pings, longest_silence_s=longest)
            pings += 1
        longest = max(longest, time.monotonic() - last)
        ok, problem, _ = await _await_echo(session, "still there", timeout)
        if not ok:
            return Exercise(echoed=True, closed_after_s=time.monotonic() - start,
                            pings=pings, longest_silence_s=longest, error=problem)
        return Exercise(echoed=True, pings=pings, longest_silence_s=longest,
                        echoed_after_idle=True)
    finally:
        await session.close()
