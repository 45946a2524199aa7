"""Diagnostic endpoints `corral doctor` reads through the load balancer (docs/doctor.md).

* `GET /diagnostics/headers`: JSON with the `Host`, `X-Forwarded-Proto`, `X-Forwarded-Port` and
  `X-Forwarded-For` values this server received (each a list: a repeated header shows as two
  values), plus `server`, a random name of this server process chosen at start, so requests
  sent through the load balancer show which servers answered them. No other header is ever
  echoed: cookies and `Authorization` stay where they were sent.
* `GET /diagnostics/stream`: STREAM_CHUNKS short text lines, STREAM_INTERVAL_S apart, as one
  chunked response; through a proxy that buffers they arrive together at the end.
* `/diagnostics/echo`: a WebSocket that sends back each message it receives (up to
  ECHO_MAX_MESSAGE_BYTES) and nothing else, so an idle period is really idle.

They need no login, change nothing, take no parameters and are not API requests (the audit log
records `/v3`, `/v3-public` and `/meta` only). They sit behind the HTTPS-redirect rules like any
other path: a plain-HTTP request without `X-Forwarded-Proto: https` is redirected, which is how
doctor sees a load balancer that loses that header.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

HEADERS_PATH = "/diagnostics/headers"
STREAM_PATH = "/diagnostics/stream"
ECHO_PATH = "/diagnostics/echo"
ECHOED_HEADERS = ("host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-for")
SERVER_FIELD = "server"
STREAM_CHUNKS = 4
STREAM_INTERVAL_S = 0.5
ECHO_MAX_MESSAGE_BYTES = 1024
CLOSE_TOO_BIG = 1009  # RFC 6455: message too big
_NO_STORE = {"cache-control": "no-store"}


def echoed_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """The values of the ECHOED_HEADERS among raw ASGI headers, in the order received."""
    seen: dict[str, list[str]] = {name: [] for name in ECHOED_HEADERS}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key in seen:
            seen[key].append(value.decode("latin-1"))
    return seen


def stream_line(index: int) -> bytes:
    """The text of chunk `index` (1-based) of the streamed response."""
    return f"chunk {index} of {STREAM_CHUNKS}\n".encode()


def diagnostic_routes(server_id: str | None = None) -> list[BaseRoute]:
    """The three endpoints; `server_id` names this server process (random when not given)."""
    name = server_id or secrets.token_hex(6)

    async def headers(request: Request) -> Response:
        body: dict[str, object] = dict(echoed_headers(request.scope.get("headers", [])))
        body[SERVER_FIELD] = name
        return JSONResponse(body, headers=_NO_STORE)

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(1, STREAM_CHUNKS + 1):
            if index > 1:
                await asyncio.sleep(STREAM_INTERVAL_S)
            yield stream_line(index)

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/plain", headers=_NO_STORE)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > ECHO_MAX_MESSAGE_BYTES:
                await websocket.close(CLOSE_TOO_BIG, f"at most {ECHO_MAX_MESSAGE_BYTES} bytes")
                return
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(data or b"")

    return [
        Route(HEADERS_PATH, headers, methods=["GET"]),
        Route(STREAM_PATH, stream, methods=["GET"]),
        WebSocketRoute(ECHO_PATH, echo),
    ]
