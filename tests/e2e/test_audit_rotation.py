"""The audit log end to end: levels and redaction through `corral server`, and rotation under
concurrent load (a bare uvicorn app and the real server) with no record lost."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.server.audit_rotate import list_backups
from tests.e2e.server.core_harness import CorralServer, start_server
from tests.support.net import free_port, wait_port, wait_until
from tests.support.procs import ManagedProcess

# An API-shaped app behind AuditMiddleware, configured from the real AUDIT_* environment.
SERVER = """
import contextlib, os, sys
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from corral.server.audit import AuditLog, AuditMiddleware, AuditSettings

async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"echo": await request.json(), "token": "token-x:topsecret"})

@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    log.close()  # uvicorn's graceful shutdown: requests done, then this
    print("stats", log.stats(), flush=True)

log = AuditLog(AuditSettings.from_env(os.environ))
api = Starlette(routes=[Route("/v3/echo", echo, methods=["POST"])], lifespan=lifespan)
uvicorn.run(AuditMiddleware(api, log), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""

REQUESTS = 500


@pytest.fixture
def audited_server(tmp_path: Path) -> Iterator[tuple[int, ManagedProcess]]:
    """The app on a free port with AUDIT_LEVEL=3 and 1 MB rotation, in tmp_path/logs/."""
    port = free_port()
    env = {
        "AUDIT_LEVEL": "3",
        "AUDIT_LOG_PATH": f"{tmp_path}/logs/",
        "AUDIT_LOG_MAXSIZE": "1",
        "AUDIT_LOG_MAXBACKUP": "0",
    }
    proc = ManagedProcess([sys.executable, "-c", SERVER, str(port)], env=env, name="audit-app")
    try:
        wait_port(port)
        yield port, proc
    finally:
        proc.stop()


async def hammer(port: int) -> None:
    """REQUESTS POSTs, 32 at a time, each carrying its number and a password."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        gate = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            async with gate:
                body = {"n": n, "password": "hunter2", "pad": "p" * 4000}
                response = await client.post(f"/v3/echo?n={n}", json=body)
                assert response.status_code == 200
                assert response.json()["token"] == "token-x:topsecret"

        await asyncio.gather(*(one(n) for n in range(REQUESTS)))


def test_rotation_under_concurrent_requests_keeps_every_record(
    audited_server: tuple[int, ManagedProcess], tmp_path: Path
) -> None:
    """Every request is one line across the active and rotated files, redacted, none lost."""
    port, proc = audited_server
    asyncio.run(hammer(port))
    proc.stop()
    active = tmp_path / "logs" / "corral-api-audit.log"
    backups = list_backups(active)
    assert len(backups) >= 2, "5 MB of records at 1 MB per file must rotate"
    files = [active, *(b.path for b in backups)]
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["requestBody"]["n"] for r in records) == list(range(REQUESTS))
    assert len({r["auditID"] for r in records}) == REQUESTS
    assert all(f.stat().st_size <= 1024 * 1024 for f in files)
    text = "".join(f.read_text() for f in files)
    assert "hunter2" not in text and "topsecret" not in text
    assert f"'written': {REQUESTS}, 'dropped': 0, 'errors': 0" in proc.log_path.read_text()


# -- the real `corral server` ---------------------------------------------------------------------

FORWARDED = {"X-Forwarded-Proto": "https"}  # what the load balancer adds; no TLS needed here


@pytest.fixture
def start_audited_server(tmp_path: Path) -> Iterator[Callable[..., CorralServer]]:
    """Factory: a real `corral server` with the given AUDIT_* environment; stopped afterwards."""
    started: list[CorralServer] = []

    def start(**env: str) -> CorralServer:
        server = start_server(tmp_path / f"server{len(started)}", env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def audit_records(server: CorralServer) -> list[dict[str, Any]]:
    """Every record in the server's audit log and its rotated files."""
    active = Path(server.env["AUDIT_LOG_PATH"])
    files = [active, *(b.path for b in list_backups(active))]
    return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines()]


def exercise_api(server: CorralServer) -> tuple[str, str]:
    """Log in twice (token and cookie) and read settings with each; the token and cookie."""
    with httpx.Client(base_url=server.http_url, headers=FORWARDED, timeout=10) as client:
        login = "/v3-public/localProviders/local?action=login"
        creds = {"username": "admin", "password": server.admin_password}
        token = client.post(login, json=creds).json()["token"]
        assert client.get("/v3/settings", headers={"Authorization": f"Bearer {token}"}).is_success
        cookie_login = client.post(login, json={**creds, "responseType": "cookie"})
        cookie = cookie_login.cookies["R_SESS"]
        client.cookies.clear()
        assert client.get("/v3/settings", headers={"Cookie": f"R_SESS={cookie}"}).is_success
    return token, cookie


@pytest.mark.parametrize("level", [1, 2, 3])
def test_real_server_records_each_level_with_redaction(
    start_audited_server: Callable[..., CorralServer], level: int
) -> None:
    """Logins and reads through `corral server` give one redacted record each, per level."""
    server = start_audited_server(AUDIT_LEVEL=str(level))
    token, cookie = exercise_api(server)

    def four_records() -> list[dict[str, Any]]:
        records = audit_records(server)
        return records if len(records) >= 4 else []

    records = wait_until(four_records, what="4 audit records")
    logins = [r for r in records if r["requestURI"].startswith("/v3-public/")]
    reads = [r for r in records if r["requestURI"] == "/v3/settings"]
    assert len(logins) == 2 and len(reads) == 2
    for read in reads:
        assert read["responseCode"] == 200 and read["method"] == "GET"
        assert read["user"]["name"] and "system:authenticated" in read["user"]["group"]
        assert "Authorization" not in read["requestHeader"]
        assert "Cookie" not in read["requestHeader"]
    assert all("Set-Cookie" not in r["responseHeader"] for r in logins)
    assert all(("requestBody" in r) == (level >= 2) for r in logins)
    assert all(("responseBody" in r) == (level >= 3) for r in records)
    if level >= 2:
        assert logins[0]["requestBody"] == {"username": "admin", "password": "[redacted]"}
    if level == 3:
        assert logins[0]["responseBody"]["token"] == "[redacted]"
        assert reads[0]["responseBody"]["type"] == "collection"
    text = Path(server.env["AUDIT_LOG_PATH"]).read_text()
    secret = token.split(":", 1)[1]
    for leaked in (server.admin_password, secret, cookie.split(":", 1)[-1]):
        assert leaked not in text


def test_real_server_rotation_under_load_loses_no_record(
    start_audited_server: Callable[..., CorralServer],
) -> None:
    """600 concurrent authenticated reads at level 3 with 1 MB files: one record each."""
    server = start_audited_server(
        AUDIT_LEVEL="3", AUDIT_LOG_MAXSIZE="1", AUDIT_LOG_MAXBACKUP="0"
    )
    token = server.login_token()
    headers = {**FORWARDED, "Authorization": f"Bearer {token}"}

    async def load() -> None:
        async with httpx.AsyncClient(
            base_url=server.http_url, headers=headers, limits=httpx.Limits(max_connections=16)
        ) as client:
            gate = asyncio.Semaphore(16)

            async def one(n: int) -> None:
                async with gate:
                    response = await client.get("/v3/settings", headers={"X-Request-N": str(n)})
                    assert response.status_code == 200

            await asyncio.gather(*(one(n) for n in range(600)))

    asyncio.run(load())
    server.stop()  # graceful: the audit log is flushed and closed
    reads = [r for r in audit_records(server) if "X-Request-N" in r["requestHeader"]]
    assert sorted(int(r["requestHeader"]["X-Request-N"][0]) for r in reads) == list(range(600))
    assert all(r["responseBody"]["type"] == "collection" for r in reads)
    assert len(list_backups(Path(server.env["AUDIT_LOG_PATH"]))) >= 2
