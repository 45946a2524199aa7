"""The proxy's connections driven in memory: bytes in, bytes out, a fake transport and clock.

As h11's tests drive its `Connection`, these drive `ClientConnection`, `Http2Connection` and
`Exchange` without a socket: a `Harness` builds a real `Engine` (a real configuration, pools and
routes) on an event loop whose clock the test moves, every client and upstream connection gets a
`FakeTransport` that records what the proxy writes, and `create_connection` is replaced so an
exchange's upstream connection is one more fake transport the test answers by hand. A test runs
in milliseconds, so the fast path can be checked before the end-to-end suite.

    h = Harness()
    client = h.http1_client()
    client.send(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    upstream = h.upstream()                  # the connection the exchange opened
    upstream.reply(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    assert client.take().endswith(b"\\r\\n\\r\\nok")
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import h2.events
from h2.config import H2Configuration
from h2.connection import H2Connection

from corral.config.lb import LbConfig
from corral.proxy.engine import Engine
from corral.proxy.http1 import ClientConnection
from corral.proxy.http2 import Http2Connection
from corral.proxy.listener import group_listeners, router
from corral.proxy.log_writer import ErrorLog, LogWriter
from corral.proxy.upstream_conn import UpstreamConnection

SERVER_NAME = "rancher.test"
START_TIME = 1000.0


class FakeLoop(asyncio.SelectorEventLoop):
    """A real event loop (futures, tasks, call_soon) whose clock only the test moves."""

    def __init__(self) -> None:
        super().__init__()
        self.fake_now = START_TIME

    def time(self) -> float:
        return self.fake_now


class FakeSSLObject:
    """What the proxy asks of an `ssl.SSLObject`: the ALPN choice and the SNI name (as the SNI
    callback of corral.proxy.tls records it)."""

    def __init__(self, alpn: str | None, server_name: str | None) -> None:
        self.alpn = alpn
        if server_name is not None:
            self.corral_server_name = server_name

    def selected_alpn_protocol(self) -> str | None:
        return self.alpn


class FakeTransport(asyncio.Transport):
    """A transport that records writes; closing it calls `connection_lost` on the next loop
    iteration, as uvloop's transports do."""

    def __init__(
        self,
        loop: FakeLoop,
        protocol: asyncio.BaseProtocol,
        *,
        peer: tuple[str, int] = ("127.0.0.1", 50000),
        ssl_object: FakeSSLObject | None = None,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.peer = peer
        self.ssl_object = ssl_object
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.reading = True
        self.eof_written = False
        self.high_water: int | None = None
        self.lost = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "ssl_object":
            return self.ssl_object
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "the proxy wrote to a transport it had closed"
        self.written += data

    def take(self) -> bytes:
        """What was written since the last take."""
        data = bytes(self.written)
        self.written.clear()
        return data

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._lose)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True


class RecordingWriter(LogWriter):
    """A `LogWriter` that keeps the lines instead of writing them."""

    def __init__(self) -> None:
        super().__init__(-1)
        self.lines: list[str] = []

    def write(self, data: bytes) -> None:
        self.lines += data.decode().splitlines()

    def close(self, timeout_s: float = 0.0) -> None:
        pass


class Peer:
    """One end the test plays (a client, or an upstream server) on a `FakeTransport`."""

    def __init__(self, harness: Harness, transport: FakeTransport) -> None:
        self.harness = harness
        self.transport = transport

    @property
    def protocol(self) -> Any:
        return self.transport.protocol

    def send(self, data: bytes) -> None:
        """Bytes from this peer to the proxy."""
        self.transport.protocol.data_received(data)  # type: ignore[attr-defined]
        self.harness.settle()

    def take(self) -> bytes:
        """What the proxy wrote to this peer since the last take."""
        self.harness.settle()
        return self.transport.take()

    def close(self) -> None:
        """This peer closes its connection."""
        self.transport.closing = True
        self.transport._lose()
        self.harness.settle()

    def fill(self) -> None:
        """This peer stops reading: the proxy's write buffer towards it is full."""
        self.transport.protocol.pause_writing()
        self.harness.settle()

    def drain(self) -> None:
        """This peer reads again."""
        self.transport.protocol.resume_writing()
        self.harness.settle()

    @property
    def closed(self) -> bool:
        """The proxy closed (or aborted) this connection."""
        return self.transport.closing


class Upstream(Peer):
    """An upstream connection the proxy opened."""

    def reply(self, data: bytes) -> None:
        """The upstream server sends `data`."""
        self.send(data)

    def received(self) -> bytes:
        """What the proxy sent upstream since the last call."""
        return self.take()


class H2Peer(Peer):
    """A client speaking HTTP/2 (the h2 library on the client side) to the proxy."""

    def __init__(self, harness: Harness, transport: FakeTransport, *, validate: bool) -> None:
        super().__init__(harness, transport)
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.h2 = H2Connection(config)
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.exchange()

    def exchange(self) -> list[h2.events.Event]:
        """Send what the client has queued, read what the proxy wrote; the new events."""
        out = self.h2.data_to_send()
        if out and not self.transport.closing:
            self.transport.protocol.data_received(out)  # type: ignore[attr-defined]
        self.harness.settle()
        events: list[h2.events.Event] = []
        data = self.transport.take()
        if data:
            events = self.h2.receive_data(data)
            self.events += events
            more = self.h2.data_to_send()  # SETTINGS ACK, WINDOW_UPDATE
            if more and not self.transport.closing:
                self.transport.protocol.data_received(more)  # type: ignore[attr-defined]
                self.harness.settle()
        return events

    def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        extra: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> int:
        """Open a stream with a request; its id."""
        stream_id: int = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"https"),
            (b":authority", SERVER_NAME.encode()),
            *(extra or []),
        ]
        self.h2.send_headers(stream_id, headers, end_stream=end)
        self.exchange()
        return stream_id

    def of_stream(self, stream_id: int) -> list[h2.events.Event]:
        """Every event so far on one stream."""
        return [e for e in self.events if getattr(e, "stream_id", None) == stream_id]

    def response_headers(self, stream_id: int) -> dict[bytes, bytes] | None:
        """The response head of a stream, if it came."""
        for event in self.of_stream(stream_id):
            if isinstance(event, h2.events.ResponseReceived):
                return dict(event.headers or [])
        return None

    def body(self, stream_id: int) -> bytes:
        """The response body received so far on a stream."""
        events = self.of_stream(stream_id)
        return b"".join(e.data or b"" for e in events if isinstance(e, h2.events.DataReceived))

    def reset_code(self, stream_id: int) -> int | None:
        """The error code the proxy reset a stream with, if it did."""
        for event in self.of_stream(stream_id):
            if isinstance(event, h2.events.StreamReset):
                return int(event.error_code)
        return None

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        """The proxy's GOAWAY, if it sent one."""
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None


def config(**overrides: Any) -> LbConfig:
    """A one-upstream, one-server configuration; `server` and `upstream` keys merge into those
    blocks, `servers` replaces the list, anything else is top level."""
    server: dict[str, Any] = {
        "listen": "127.0.0.1:8443",
        "server_name": SERVER_NAME,
        "proxy_pass": "app",
    }
    server.update(overrides.pop("server", {}))
    upstream: dict[str, Any] = {"servers": ["127.0.0.1:9001"]}
    upstream.update(overrides.pop("upstream", {}))
    data: dict[str, Any] = {
        "access_log": "off",
        "worker_processes": 1,
        "upstreams": {"app": upstream},
        "servers": [server],
    }
    data.update(overrides)
    return LbConfig.model_validate(data)


class Harness:
    """An `Engine` in memory: clients and upstreams are `Peer`s the test plays."""

    def __init__(self, lb_config: LbConfig | None = None) -> None:
        self.loop = FakeLoop()
        self.config = lb_config if lb_config is not None else config()
        self.engine = Engine(self.config, self.loop)
        self.errors = RecordingWriter()
        self.engine.error_log = ErrorLog(self.errors, clock=self.loop.time)
        self.routers = [router(spec, self.engine.pools) for spec in group_listeners(self.config)]
        self.upstreams: list[Upstream] = []
        self.connect: Callable[[str, int], Any] | None = None  # None: connect at once
        self.loop.create_connection = self._create_connection  # type: ignore[method-assign,assignment]

    # -- time ----------------------------------------------------------------------------------
    def settle(self) -> None:
        """Run every callback that is ready (call_soon, finished connects), without waiting."""
        for _ in range(20):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not self.loop._ready:  # type: ignore[attr-defined]
                return

    def advance(self, seconds: float) -> None:
        """Move the clock and run the engine's tick (its timeout sweep) once."""
        self.loop.fake_now += seconds
        self.engine._tick()
        handle = self.engine._tick_handle
        if handle is not None:
            handle.cancel()
        self.settle()

    # -- connections ---------------------------------------------------------------------------
    def http1_client(self, *, listener: int = 0) -> Peer:
        """A new HTTP/1.1 client connection on a listener."""
        connection = ClientConnection(self.engine, self.routers[listener])
        transport = FakeTransport(self.loop, connection)
        connection.connection_made(transport)
        return Peer(self, transport)

    def h2_client(
        self, *, listener: int = 0, server_name: str | None = None, validate: bool = True
    ) -> H2Peer:
        """A new client connection that negotiated `h2` by ALPN (with `server_name` as SNI);
        `validate=False` lets the test send header blocks h2 would refuse to build."""
        connection = ClientConnection(self.engine, self.routers[listener])
        transport = FakeTransport(
            self.loop, connection, ssl_object=FakeSSLObject("h2", server_name)
        )
        connection.connection_made(transport)
        assert isinstance(transport.protocol, Http2Connection)
        return H2Peer(self, transport, validate=validate)

    async def _create_connection(
        self, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, **_: Any
    ) -> tuple[FakeTransport, asyncio.BaseProtocol]:
        if self.connect is not None:
            await self.connect(host, port)  # may raise OSError, or wait for the test
        protocol = factory()
        transport = FakeTransport(self.loop, protocol, peer=(host, port))
        protocol.connection_made(transport)
        self.upstreams.append(Upstream(self, transport))
        return transport, protocol

    def upstream(self, index: int = -1) -> Upstream:
        """An upstream connection the proxy opened (the latest by default)."""
        self.settle()
        assert self.upstreams, "the proxy opened no upstream connection"
        return self.upstreams[index]

    def idle_upstreams(self) -> list[UpstreamConnection]:
        """Pooled (idle, kept-alive) upstream connections of every endpoint."""
        return [
            conn  # type: ignore[misc]
            for pool in self.engine.pools.values()
            for endpoint in pool.endpoints
            for conn in endpoint.idle
        ]

    def error_lines(self, pattern: str = "") -> list[str]:
        """Error-log lines so far (those matching a regular expression)."""
        return [line for line in self.errors.lines if re.search(pattern, line)]

    def close(self) -> None:
        """Close the loop (the test is over)."""
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.settle()
        self.loop.close()


def harness_fixture(lb_config: LbConfig | None = None) -> Iterator[Harness]:
    """A `Harness` closed after the test (for pytest fixtures)."""
    harness = Harness(lb_config)
    try:
        yield harness
    finally:
        harness.close()


def response(status: str = "200 OK", body: bytes = b"ok", headers: str = "") -> bytes:
    """An upstream HTTP/1.1 response with a Content-Length."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body
    )
