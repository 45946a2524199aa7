"""The test backend itself, spoken to directly: the lb tests rely on each of these behaviours."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess

import httpx
import websockets

from tests.e2e.lb.backend import pattern_bytes, pattern_sha256
from tests.e2e.lb.clients import get_request, plain_connect, read_head
from tests.e2e.lb.conftest import StartBackends


def test_backend_echo_reports_request_and_connection(backends: StartBackends) -> None:
    """/echo returns method, query, headers, body digest, name and a per-connection id."""
    (backend,) = backends(names=["alpha"])
    with httpx.Client(base_url=f"http://{backend.address}", timeout=30) as client:
        first = client.post("/echo?a=1", content=b"hello", headers={"X-Test": "yes"}).json()
        second = client.get("/echo").json()
    assert first["method"] == "POST" and first["query"] == "a=1"
    assert ["x-test", "yes"] in first["headers"]
    assert first["body_length"] == 5
    assert first["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert first["backend"] == "alpha"
    assert first["connection"] == second["connection"]
    assert backend.stats()["connections_accepted"] == 2  # the client's, then the stats call


def test_backend_bytes_and_chunked_bodies(backends: StartBackends) -> None:
    """/bytes/<n> uses Content-Length, /chunked/<n> chunked framing, both the same pattern."""
    (backend,) = backends()
    with httpx.Client(base_url=f"http://{backend.address}", timeout=30) as client:
        sized = client.get("/bytes/200000")
        chunked = client.get("/chunked/200000")
    assert sized.headers["content-length"] == "200000"
    assert chunked.headers["transfer-encoding"] == "chunked"
    assert sized.content == chunked.content == pattern_bytes(200000)
    assert hashlib.sha256(sized.content).hexdigest() == pattern_sha256(200000)


def test_backend_health_toggle(backends: StartBackends) -> None:
    """/admin/health?status=500 makes /healthz fail and counts checks."""
    (backend,) = backends()
    with httpx.Client(base_url=f"http://{backend.address}", timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        backend.set_health(500)
        assert client.get("/healthz").status_code == 500
    assert backend.stats()["health_checks"] == 2


def test_backend_expect_100_continue_upload(backends: StartBackends, tmp_path: object) -> None:
    """curl's Expect: 100-continue gets a 100 and the upload digest comes back."""
    (backend,) = backends()
    body = pattern_bytes(2 * 1024 * 1024)
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-v",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "30",
            "--data-binary",
            "@-",
            f"http://{backend.address}/upload",
        ],
        input=body,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"HTTP/1.1 100" in result.stderr
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(body).hexdigest()


def test_backend_raw_upgrade_echo(backends: StartBackends) -> None:
    """An Upgrade: SPDY/3.1 request gets 101 and raw bytes are echoed."""
    (backend,) = backends()
    with plain_connect(backend.port) as sock:
        sock.sendall(get_request("/x", extra=["Upgrade: SPDY/3.1", "Connection: Upgrade"]))
        response, rest = read_head(sock)
        assert response.status == 101
        assert response.header("upgrade") == "SPDY/3.1"
        sock.sendall(b"\x00\x01ping")
        echoed = rest
        while len(echoed) < 6:
            echoed += sock.recv(100)
        assert echoed == b"\x00\x01ping"


def test_backend_websocket_echo(backends: StartBackends) -> None:
    """/ws echoes text and binary WebSocket messages."""
    (backend,) = backends()

    async def talk() -> tuple[str | bytes, str | bytes]:
        async with websockets.connect(f"ws://{backend.address}/ws") as ws:
            await ws.send("hi")
            text = await ws.recv()
            await ws.send(b"\x00" * 100_000)
            return text, await ws.recv()

    text, binary = asyncio.run(talk())
    assert text == "hi"
    assert binary == b"\x00" * 100_000
