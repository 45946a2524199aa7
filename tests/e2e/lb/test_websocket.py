"""WebSocket and any other Upgrade pass through the lb; an idle tunnel closes on its timeout."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.lb.clients import get_request, read_head, tls_connect
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, LbProcess, lb_config
from tests.support.net import wait_until

SHORT_READ_TIMEOUT = 2.0


def wss(certs: Certs, port: int) -> connect:
    """A websockets client to wss://localhost:port/ws with no keepalive pings of its own."""
    return connect(
        f"wss://localhost:{port}/ws",
        ssl=certs.client_context(),
        ping_interval=None,
        open_timeout=30,
        close_timeout=10,
        max_size=None,
    )


async def echo(ws: ClientConnection, message: str | bytes) -> str | bytes:
    await ws.send(message)
    return await asyncio.wait_for(ws.recv(), timeout=30)


@pytest.fixture
def backend(backends: StartBackends) -> Backend:
    return backends(1)[0]


@pytest.fixture
def lb(certs: Certs, backend: Backend, start_lb: StartLb) -> LbProcess:
    return start_lb(lb_config(certs, [backend]))


@pytest.fixture
def short_timeout_lb(certs: Certs, backend: Backend, start_lb: StartLb) -> LbProcess:
    """An lb whose read_timeout (the tunnel idle timeout) is two seconds."""
    return start_lb(lb_config(certs, [backend], server={"read_timeout": f"{SHORT_READ_TIMEOUT}s"}))


def test_websocket_echo_over_wss(certs: Certs, lb: LbProcess) -> None:
    """Text and binary messages (up to 4 MiB) echo through wss:// unchanged."""
    big = os.urandom(4 * 1024 * 1024)

    async def talk() -> None:
        async with wss(certs, lb.port) as ws:
            for index in range(20):
                assert await echo(ws, f"message {index}") == f"message {index}"
            assert await echo(ws, big) == big

    asyncio.run(talk())


def test_websocket_upgrade_headers_reach_backend(certs: Certs, lb: LbProcess) -> None:
    """The upstream sees Upgrade: websocket, Connection: upgrade and X-Forwarded-Proto https."""

    async def handshake_headers() -> dict[str, str]:
        async with wss(certs, lb.port) as ws:
            assert ws.response is not None
            return {k.lower(): v for k, v in ws.response.headers.raw_items()}

    headers = asyncio.run(handshake_headers())
    assert headers["x-echo-upgrade"].lower() == "websocket"
    assert "upgrade" in headers["x-echo-connection"].lower()
    assert headers["x-echo-x-forwarded-proto"] == "https"


def test_websocket_close_handshake_passes_through(certs: Certs, lb: LbProcess) -> None:
    """A client close (1000) is answered by the backend's close frame through the tunnel."""

    async def close() -> int | None:
        async with wss(certs, lb.port) as ws:
            await echo(ws, "hi")
            await ws.close(code=1000, reason="bye")
            return ws.close_code

    assert asyncio.run(close()) == 1000


def test_concurrent_websockets(certs: Certs, lb: LbProcess) -> None:
    """Twenty WebSockets at once each get their own echoes back."""

    async def one(index: int) -> bool:
        async with wss(certs, lb.port) as ws:
            return all([await echo(ws, f"{index}-{n}") == f"{index}-{n}" for n in range(10)])

    async def many() -> list[bool]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    assert all(asyncio.run(many()))


def test_spdy_upgrade_tunnel(certs: Certs, lb: LbProcess) -> None:
    """Upgrade: SPDY/3.1 (kubectl exec) gets 101 and a byte tunnel both ways."""
    payload = bytes(range(256)) * 4096  # 1 MiB of every byte value
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/api/exec", extra=["Upgrade: SPDY/3.1", "Connection: Upgrade"]))
        response, received = read_head(sock)
        assert response.status == 101
        assert response.header("upgrade") == "SPDY/3.1"
        assert response.header("x-echo-upgrade") == "SPDY/3.1"
        assert "upgrade" in (response.header("x-echo-connection") or "").lower()
        sock.sendall(payload)
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, f"tunnel closed after {len(received)} bytes"
            received += chunk
    assert received == payload


def test_websocket_idle_longer_than_read_timeout_is_closed(
    certs: Certs, backend: Backend, short_timeout_lb: LbProcess
) -> None:
    """A WebSocket idle past read_timeout is closed by the lb, on both sides of the tunnel."""

    async def idle_until_closed() -> bool:
        async with wss(certs, short_timeout_lb.port) as ws:
            assert await echo(ws, "before idle") == "before idle"
            try:
                await asyncio.wait_for(ws.recv(), timeout=SHORT_READ_TIMEOUT * 10)
            except ConnectionClosed:
                return True
            return False

    assert asyncio.run(idle_until_closed()), "the idle WebSocket stayed open"
    wait_until(
        lambda: backend.stats()["tunnels_open"] == 0, timeout=20, what="upstream tunnel closed"
    )


def test_websocket_idle_shorter_than_read_timeout_is_kept(
    certs: Certs, short_timeout_lb: LbProcess
) -> None:
    """A WebSocket idle for a quarter of read_timeout still echoes afterwards."""

    async def idle_briefly() -> str | bytes:
        async with wss(certs, short_timeout_lb.port) as ws:
            await echo(ws, "before")
            await asyncio.sleep(SHORT_READ_TIMEOUT / 4)  # the idle period is the behaviour
            return await echo(ws, "after")

    assert asyncio.run(idle_briefly()) == "after"


def test_busy_websocket_outlives_read_timeout(certs: Certs, short_timeout_lb: LbProcess) -> None:
    """Traffic resets the idle timer: a WebSocket active for 2x read_timeout stays open."""

    async def stay_busy() -> int:
        async with wss(certs, short_timeout_lb.port) as ws:
            loop = asyncio.get_running_loop()
            end = loop.time() + SHORT_READ_TIMEOUT * 2
            count = 0
            while loop.time() < end:
                assert await echo(ws, f"tick {count}") == f"tick {count}"
                count += 1
                await asyncio.sleep(SHORT_READ_TIMEOUT / 5)  # paced traffic is the behaviour
            return count

    assert asyncio.run(stay_busy()) >= 5
