"""A test backend for the load balancer: h11 (HTTP/1.1) and wsproto over asyncio streams.

Run it as ``python -m tests.e2e.lb.backend --port P --name NAME``; it prints ``ready`` once
listening. Endpoints:

- ``/healthz``: 200 ``ok``, or the status set with ``/admin/health?status=N``
- ``/admin/stats``: JSON counters (connections accepted/open, requests, in-flight, health checks)
- ``/echo``: JSON with method, path, query, the headers received, body length and sha256,
  the backend name and the id of the connection that carried the request
- ``/bytes/<n>``: n bytes of ``pattern_bytes`` with Content-Length, streamed in chunks
- ``/chunked/<n>``: the same bytes with Transfer-Encoding chunked
- ``/upload[?slow=KiB/s]``: reads the body (throttled when asked), answers {length, sha256}
- ``/status/<code>[?header=Name:Value…]``: that status, with extra response headers
- ``/delay/<seconds>``
- ``/truncate/<n>``: promises n bytes, sends half, then drops the connection (with
  ``?on=<name>`` only on that backend; the others send all n bytes)
- ``/stream?chunks=N&interval=S``: N chunked lines spaced S seconds apart, each carrying the
  wall-clock time it was sent
- ``/ws``: WebSocket echo (h11 handshake, then wsproto frames)
- any other ``Upgrade`` value: 101, then the raw bytes are echoed back
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    TextMessage,
)
from wsproto.utilities import generate_accept_token

READ_SIZE = 65536
CHUNK_SIZE = 65536
_PATTERN = bytes(range(256)) * (CHUNK_SIZE // 256)


def pattern_bytes(length: int) -> bytes:
    """The exact body ``/bytes/<length>`` and ``/chunked/<length>`` serve."""
    whole, rest = divmod(length, CHUNK_SIZE)
    return _PATTERN * whole + _PATTERN[:rest]


def pattern_sha256(length: int) -> str:
    """sha256 hex digest of ``pattern_bytes(length)`` without building it in memory."""
    digest = hashlib.sha256()
    whole, rest = divmod(length, CHUNK_SIZE)
    for _ in range(whole):
        digest.update(_PATTERN)
    digest.update(_PATTERN[:rest])
    return digest.hexdigest()


@dataclass
class Stats:
    """Counters a test can read through ``/admin/stats``."""

    name: str
    health_status: int = 200
    connections_accepted: int = 0
    connections_open: int = 0
    requests: int = 0
    in_flight: int = 0
    health_checks: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    tunnels_open: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "health_status": self.health_status,
            "connections_accepted": self.connections_accepted,
            "connections_open": self.connections_open,
            "requests": self.requests,
            "in_flight": self.in_flight,
            "health_checks": self.health_checks,
            "tunnels_open": self.tunnels_open,
            "paths": dict(self.paths),
        }


class ClientGone(Exception):
    """The peer closed the connection or broke the protocol; stop serving it."""


class HttpConnection:
    """One downstream connection: h11 in the middle, asyncio streams at the edges."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stats: Stats,
        connection_id: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.stats = stats
        self.connection_id = connection_id
        self.conn = h11.Connection(h11.SERVER)
        self.head = False
        self.request_headers: list[tuple[str, str]] = []

    # -- I/O helpers -------------------------------------------------------------------------

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self, read_size: int = READ_SIZE) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise ClientGone
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = await self.reader.read(read_size)
            self.conn.receive_data(data)

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        headers += extra or []
        await self.send(h11.Response(status_code=status, headers=headers))
        if body and not self.head:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def respond_json(self, status: int, payload: dict[str, Any]) -> None:
        await self.respond(status, json.dumps(payload).encode(), "application/json")

    async def read_body(self, throttle_bytes_per_s: float = 0.0) -> tuple[int, str]:
        """Read the request body (sending 100 Continue if the client waits for it)."""
        if self.conn.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        digest = hashlib.sha256()
        length = 0
        read_size = READ_SIZE
        if throttle_bytes_per_s:
            read_size = max(1024, min(READ_SIZE, int(throttle_bytes_per_s / 20)))
        started = time.monotonic()
        while True:
            event = await self.next_event(read_size)
            if isinstance(event, h11.Data):
                digest.update(event.data)
                length += len(event.data)
                ahead = length / throttle_bytes_per_s if throttle_bytes_per_s else 0.0
                ahead -= time.monotonic() - started
                if ahead > 0:  # never faster than the requested rate
                    await asyncio.sleep(ahead)
            elif isinstance(event, h11.EndOfMessage):
                return length, digest.hexdigest()
            else:
                raise ClientGone

    # -- the connection loop -----------------------------------------------------------------

    async def serve(self) -> None:
        try:
            while True:
                event = await self.next_event()
                if not isinstance(event, h11.Request):
                    raise ClientGone
                counted = not event.target.startswith((b"/admin/", b"/healthz"))
                if counted:
                    self.stats.requests += 1
                    self.stats.in_flight += 1
                try:
                    switched = await self.handle(event)
                finally:
                    if counted:
                        self.stats.in_flight -= 1
                if switched:
                    return
                if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                    return
                if self.conn.their_state is not h11.DONE:  # handler left body unread: drain it
                    while not isinstance(await self.next_event(), h11.EndOfMessage):
                        pass
                self.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                body = f"bad request: {exc}\n".encode()
                try:
                    self.writer.write(
                        self.conn.send(
                            h11.Response(
                                status_code=exc.error_status_hint,
                                headers=[
                                    ("Content-Length", str(len(body))),
                                    ("Connection", "close"),
                                ],
                            )
                        )
                        or b""
                    )
                    self.writer.write(self.conn.send(h11.Data(data=body)) or b"")
                    self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")
                except h11.LocalProtocolError:
                    pass
        except (ClientGone, ConnectionError, h11.LocalProtocolError):
            pass

    async def handle(self, request: h11.Request) -> bool:
        """Answer one request; True when the connection is no longer HTTP (switched or gone)."""
        self.head = request.method == b"HEAD"
        target = request.target.decode("latin-1")
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query)
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        self.request_headers = headers
        upgrade = next((v for n, v in headers if n.lower() == "upgrade"), "")
        self.stats.paths[path] = self.stats.paths.get(path, 0) + 1

        if upgrade and not path.startswith("/status/"):  # /status/… declines any upgrade
            self.stats.tunnels_open += 1
            try:
                if path == "/ws" and upgrade.lower() == "websocket":
                    return await self.websocket(request)
                return await self.raw_upgrade(upgrade)
            finally:
                self.stats.tunnels_open -= 1
        if path == "/healthz":
            self.stats.health_checks += 1
            status = self.stats.health_status
            await self.respond(status, b"ok\n" if status == 200 else b"unhealthy\n")
        elif path == "/admin/health":
            self.stats.health_status = int(query.get("status", ["200"])[0])
            await self.respond_json(200, self.stats.as_json())
        elif path == "/admin/stats":
            await self.respond_json(200, self.stats.as_json())
        elif path == "/echo":
            length, sha = await self.read_body()
            await self.respond_json(
                200,
                {
                    "method": request.method.decode(),
                    "path": path,
                    "query": parts.query,
                    "http_version": request.http_version.decode(),
                    "headers": [[n, v] for n, v in headers],
                    "body_length": length,
                    "body_sha256": sha,
                    "backend": self.stats.name,
                    "connection": self.connection_id,
                    "health_checks": self.stats.health_checks,
                },
            )
        elif m := re.fullmatch(r"/bytes/(\d+)", path):
            await self.stream_bytes(int(m.group(1)), chunked=False)
        elif m := re.fullmatch(r"/chunked/(\d+)", path):
            await self.stream_bytes(int(m.group(1)), chunked=True)
        elif path == "/upload":
            kib_per_s = float(query.get("slow", ["0"])[0])
            length, sha = await self.read_body(kib_per_s * 1024)
            await self.respond_json(
                200, {"length": length, "sha256": sha, "backend": self.stats.name}
            )
        elif m := re.fullmatch(r"/status/(\d{3})", path):
            status = int(m.group(1))
            extra = [tuple(h.split(":", 1)) for h in query.get("header", []) if ":" in h]
            body = b"" if status in (204, 304) else f"status {status}\n".encode()
            await self.respond(status, body, extra=[(n, v) for n, v in extra])
        elif m := re.fullmatch(r"/delay/(\d+(?:\.\d+)?)", path):
            await asyncio.sleep(float(m.group(1)))
            await self.respond_json(200, {"delayed": float(m.group(1)), "backend": self.stats.name})
        elif (m := re.fullmatch(r"/truncate/(\d+)", path)) and query.get(
            "on", [self.stats.name]
        )[0] == self.stats.name:
            await self.truncated(int(m.group(1)))
            return True  # the connection is gone
        elif m := re.fullmatch(r"/truncate/(\d+)", path):  # ?on= names another backend
            await self.stream_bytes(int(m.group(1)), chunked=False)
        elif path == "/stream":
            await self.stream_lines(
                int(query.get("chunks", ["5"])[0]), float(query.get("interval", ["0.2"])[0])
            )
        else:
            await self.respond(404, b"not found\n")
        return False

    async def stream_bytes(self, length: int, chunked: bool) -> None:
        framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(length))
        headers = [("Content-Type", "application/octet-stream"), framing]
        await self.send(h11.Response(status_code=200, headers=headers))
        remaining = length
        while remaining:
            piece = _PATTERN[: min(CHUNK_SIZE, remaining)]
            await self.send(h11.Data(data=piece))
            remaining -= len(piece)
        await self.send(h11.EndOfMessage())

    async def truncated(self, length: int) -> None:
        """Promise `length` bytes, send half of them, then drop the connection."""
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))]
        await self.send(h11.Response(status_code=200, headers=headers))
        await self.send(h11.Data(data=pattern_bytes(length // 2)))
        self.writer.transport.abort()

    async def stream_lines(self, chunks: int, interval: float) -> None:
        headers = [("Content-Type", "application/x-ndjson"), ("Transfer-Encoding", "chunked")]
        await self.send(h11.Response(status_code=200, headers=headers))
        for index in range(chunks):
            if index:
                await asyncio.sleep(interval)
            line = json.dumps({"chunk": index, "sent_at": time.time()}) + "\n"
            await self.send(h11.Data(data=line.encode()))
        await self.send(h11.EndOfMessage())

    # -- protocol switches -------------------------------------------------------------------

    async def accept_switch(self, headers: list[tuple[str, str]]) -> bytes:
        """Finish the request, send 101 and return bytes that arrived after the head."""
        event = await self.next_event()
        if not isinstance(event, h11.EndOfMessage):
            raise ClientGone
        if self.conn.next_event() is not h11.PAUSED:
            raise ClientGone
        await self.send(h11.InformationalResponse(status_code=101, headers=headers))
        trailing, _closed = self.conn.trailing_data
        return bytes(trailing)

    def received_as_headers(self) -> list[tuple[str, str]]:
        """The upgrade request's Connection/Upgrade/X-Forwarded-* values, as X-Echo-* headers."""
        wanted = {"connection", "upgrade", "host", "x-forwarded-proto", "x-forwarded-for"}
        return [(f"X-Echo-{n}", v) for n, v in self.request_headers if n.lower() in wanted]

    async def raw_upgrade(self, protocol: str) -> bool:
        """Any Upgrade: 101, then echo raw bytes until the peer closes."""
        trailing = await self.accept_switch(
            [("Upgrade", protocol), ("Connection", "Upgrade"), *self.received_as_headers()]
        )
        if trailing:
            self.writer.write(trailing)
        while data := await self.reader.read(READ_SIZE):
            self.writer.write(data)
            await self.writer.drain()
        return True

    async def websocket(self, request: h11.Request) -> bool:
        """WebSocket echo: h11 completes the handshake, wsproto speaks the frames."""
        key = next((v for n, v in request.headers if n.lower() == b"sec-websocket-key"), b"")
        trailing = await self.accept_switch(
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", generate_accept_token(key).decode()),
                *self.received_as_headers(),
            ]
        )
        ws = WsConnection(ConnectionType.SERVER)
        if trailing:
            ws.receive_data(trailing)
        while True:
            for event in ws.events():
                if isinstance(event, TextMessage):
                    echo_text = TextMessage(
                        data=event.data, message_finished=event.message_finished
                    )
                    self.writer.write(ws.send(echo_text))
                elif isinstance(event, BytesMessage):
                    echo_bytes = BytesMessage(
                        data=event.data, message_finished=event.message_finished
                    )
                    self.writer.write(ws.send(echo_bytes))
                elif isinstance(event, Ping):
                    self.writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.writer.write(ws.send(event.response()))
                    await self.writer.drain()
                    return True
            await self.writer.drain()
            data = await self.reader.read(READ_SIZE)
            if not data:
                return True
            ws.receive_data(data)


async def serve(port: int, name: str) -> None:
    """Listen on 127.0.0.1:port until killed."""
    stats = Stats(name=name)
    ids = itertools.count(1)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats.connections_accepted += 1
        stats.connections_open += 1
        try:
            await HttpConnection(reader, writer, stats, f"{name}-{next(ids)}").serve()
        finally:
            stats.connections_open -= 1
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    server = await asyncio.start_server(on_connect, "127.0.0.1", port, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="backend")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.name))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
