"""corral server's diagnostic endpoints, asked directly: no login, only Host and X-Forwarded-*
echoed, not in the audit log, the echo WebSocket bounded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets

from corral.server.diagnostics import ECHO_MAX_MESSAGE_BYTES
from tests.e2e.server.core_harness import start_server
from tests.support.net import wait_until

SECRET = "s3cr3t-value-never-echoed"


def test_diagnostic_endpoints_echo_only_forwarded_headers_and_are_not_audited(
    tmp_path: Path,
) -> None:
    """/diagnostics/headers needs no login and returns only Host and X-Forwarded-* (a cookie,
    Authorization or other header never comes back); API requests are audited, diagnostic
    ones are not; the echo WebSocket returns a message and closes on one too big (1009)."""
    server = start_server(tmp_path / "server", env={"AUDIT_LEVEL": "1"})
    try:
        sent = {"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
                "X-Forwarded-For": "192.0.2.7", "Cookie": f"R_SESS={SECRET}",
                "Authorization": f"Bearer {SECRET}", "X-Other": SECRET}
        answer = httpx.get(f"{server.http_url}/diagnostics/headers", headers=sent, timeout=10)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"host", "x-forwarded-proto", "x-forwarded-port",
                             "x-forwarded-for", "server"}
        assert body["x-forwarded-proto"] == ["https"]
        assert body["x-forwarded-for"] == ["192.0.2.7"]
        assert body["host"] == [f"127.0.0.1:{server.http_port}"]
        assert SECRET not in answer.text
        assert answer.headers["cache-control"] == "no-store"

        httpx.get(f"{server.http_url}/v3", headers={"X-Forwarded-Proto": "https"}, timeout=10)
        log = Path(server.env["AUDIT_LOG_PATH"])
        wait_until(lambda: log.exists() and '"/v3"' in log.read_text(), timeout=10,
                   what="the audit line of GET /v3")
        uris = [json.loads(line)["requestURI"] for line in log.read_text().splitlines()]
        assert not [uri for uri in uris if uri.startswith("/diagnostics")]

        asyncio.run(_echo_is_bounded(server.http_port))
    finally:
        server.stop()


async def _echo_is_bounded(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/diagnostics/echo"
    async with websockets.connect(url, additional_headers={"X-Forwarded-Proto": "https"},
                                  ping_interval=None, open_timeout=10) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 10) == "hello"
        await ws.send("x" * (ECHO_MAX_MESSAGE_BYTES + 1))
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1009
