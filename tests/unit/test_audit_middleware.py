"""AuditMiddleware records per level, with redaction, in-process (no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from corral.server.audit import AuditLog, AuditMiddleware, AuditSettings, default_audited

Records = list[dict[str, Any]]


async def login(request: Request) -> Response:
    body = await request.json()
    response = JSONResponse({"token": "token-abc:secret", "user": body["username"]}, 201)
    response.set_cookie("R_SESS", "token-abc:secret", secure=True, httponly=True)
    return response


async def settings(request: Request) -> Response:
    return JSONResponse({"data": [{"name": "server-url", "value": "https://x"}]})


async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"a" * 1000

    return StreamingResponse(chunks(), media_type="text/plain")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def subscribe(websocket: WebSocket) -> None:
    if websocket.query_params.get("deny"):
        await websocket.close()
        return
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def with_user(app: ASGIApp) -> ASGIApp:
    """A stand-in auth layer: marks requests with `Authorization` as admin."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            headers = dict(scope["headers"])
            if b"authorization" in headers:
                scope["state"]["user"] = {"name": "user-admin", "group": ["system:authenticated"]}
        await app(scope, receive, send)

    return middleware


APP = Starlette(
    routes=[
        Route("/v3-public/localProviders/local", login, methods=["POST"]),
        Route("/v3/settings", settings),
        Route("/v3/stream", stream),
        Route("/v3/boom", boom),
        Route("/ping", ping),
        WebSocketRoute("/v3/subscribe", subscribe),
    ]
)


def audited(
    tmp_path: Path, level: int, exercise: Callable[[httpx.AsyncClient], Awaitable[None]],
    body_limit: int = 1024 * 1024,
) -> Records:
    """Run `exercise` against the app behind the middleware; the records written."""
    log = AuditLog(AuditSettings(level=level, path=tmp_path / "audit.log"))
    app = AuditMiddleware(with_user(APP), log, body_limit=body_limit)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://corral") as client:
            await exercise(client)

    asyncio.run(main())
    log.close()
    path = tmp_path / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def do_login(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v3-public/localProviders/local?action=login",
        json={"username": "admin", "password": "hunter2", "nested": {"Token": "t"}},
        headers={"Cookie": "R_SESS=old", "X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 201


def test_level_0_records_nothing(tmp_path: Path) -> None:
    """AUDIT_LEVEL=0: the middleware is a pass-through and no file appears."""
    assert audited(tmp_path, 0, do_login) == []
    assert not (tmp_path / "audit.log").exists()


def test_level_1_records_metadata_only(tmp_path: Path) -> None:
    """Level 1: every field of the metadata, redacted headers, no bodies."""
    (record,) = audited(tmp_path, 1, do_login)
    assert list(record) == [
        "auditID", "requestURI", "user", "method", "remoteAddr", "requestTimestamp",
        "responseTimestamp", "responseCode", "requestHeader", "responseHeader",
    ]
    assert record["requestURI"] == "/v3-public/localProviders/local?action=login"
    assert record["method"] == "POST" and record["responseCode"] == 201
    assert record["user"] == {"name": "", "group": []}
    assert record["remoteAddr"] == "127.0.0.1:123"
    assert record["requestHeader"]["X-Forwarded-Proto"] == ["https"]
    assert "Cookie" not in record["requestHeader"]
    assert "Set-Cookie" not in record["responseHeader"]
    assert record["responseHeader"]["Content-Type"] == ["application/json"]
    assert record["requestTimestamp"] <= record["responseTimestamp"]
    assert record["requestTimestamp"].endswith("Z") and len(record["requestTimestamp"]) == 27
    assert len(record["auditID"]) == 36


def test_level_2_adds_the_redacted_request_body(tmp_path: Path) -> None:
    """Level 2: the request body appears with password and nested token redacted."""
    (record,) = audited(tmp_path, 2, do_login)
    assert record["requestBody"] == {
        "username": "admin", "password": "[redacted]", "nested": {"Token": "[redacted]"}
    }
    assert "responseBody" not in record


def test_level_3_adds_the_redacted_response_body(tmp_path: Path) -> None:
    """Level 3: the response body appears with the token redacted; the secret is nowhere."""
    (record,) = audited(tmp_path, 3, do_login)
    assert record["responseBody"] == {"token": "[redacted]", "user": "admin"}
    text = (tmp_path / "audit.log").read_text()
    assert "hunter2" not in text and "secret" not in text and "R_SESS" not in text


def test_user_comes_from_the_auth_layer_and_auth_header_is_dropped(tmp_path: Path) -> None:
    """The user the auth layer set after the app ran is recorded; Authorization is not."""

    async def get(client: httpx.AsyncClient) -> None:
        await client.get("/v3/settings", headers={"Authorization": "Bearer token-abc:secret"})

    (record,) = audited(tmp_path, 1, get)
    assert record["user"] == {"name": "user-admin", "group": ["system:authenticated"]}
    assert "Authorization" not in record["requestHeader"]


def test_unaudited_paths_are_not_recorded(tmp_path: Path) -> None:
    """/ping is not part of the API: no record."""

    async def get(client: httpx.AsyncClient) -> None:
        assert (await client.get("/ping")).text == "pong"
        await client.get("/v3/settings")

    assert [r["requestURI"] for r in audited(tmp_path, 3, get)] == ["/v3/settings"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/v3", True), ("/v3/settings", True), ("/v3-public", True), ("/v3-public/x", True),
     ("/meta/proxy", True), ("/v3x", False), ("/metadata", False), ("/healthz", False),
     ("/", False), ("", False)],
)
def test_audited_paths_are_the_api_and_below(path: str, expected: bool) -> None:
    """default_audited: /v3, /v3-public, /meta and paths under them; nothing else."""
    assert default_audited(path) is expected


def test_streamed_body_passes_whole_and_record_is_truncated(tmp_path: Path) -> None:
    """A streamed response reaches the client whole; the record keeps the limit and says so."""

    async def get(client: httpx.AsyncClient) -> None:
        response = await client.get("/v3/stream")
        assert response.text == "a" * 4000

    (record,) = audited(tmp_path, 3, get, body_limit=2500)
    assert record["responseBody"] == "a" * 2500
    assert record["responseBodyTruncated"] is True


def test_app_exception_is_recorded_as_500(tmp_path: Path) -> None:
    """An exception in the app still produces a record, with code 500."""

    async def get(client: httpx.AsyncClient) -> None:
        assert (await client.get("/v3/boom")).status_code == 500

    (record,) = audited(tmp_path, 1, get)
    assert record["responseCode"] == 500


async def drive_websocket(app: ASGIApp, query: bytes) -> list[Message]:
    """Run one WebSocket session through `app` with a scripted client; the messages sent."""
    inbox: list[Message] = [{"type": "websocket.connect"}, {"type": "websocket.disconnect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "websocket", "path": "/v3/subscribe", "raw_path": b"/v3/subscribe",
        "query_string": query, "headers": [(b"cookie", b"R_SESS=x"), (b"host", b"corral")],
        "client": ("10.0.0.9", 5555), "scheme": "wss", "subprotocols": [],
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(("query", "code"), [(b"", 101), (b"deny=1", 403)])
def test_websocket_handshakes_are_recorded(tmp_path: Path, query: bytes, code: int) -> None:
    """A WebSocket connect is one record: 101 when accepted, 403 when refused."""
    log = AuditLog(AuditSettings(level=3, path=tmp_path / "audit.log"))
    sent = asyncio.run(drive_websocket(AuditMiddleware(APP, log), query))
    log.close()
    (record,) = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert record["responseCode"] == code and record["method"] == "GET"
    assert record["requestURI"] == "/v3/subscribe" + ("?deny=1" if query else "")
    assert record["remoteAddr"] == "10.0.0.9:5555"
    assert "Cookie" not in record["requestHeader"]
    if code == 101:
        assert {"type": "websocket.send", "text": "hello"} in sent
