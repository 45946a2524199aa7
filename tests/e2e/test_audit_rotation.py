"""Audit rotation under concurrent load through a real uvicorn server loses no record."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.server.audit_rotate import list_backups
from tests.support.net import free_port, wait_port
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
