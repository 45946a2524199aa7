"""API audit log: one JSON line per API request, with the fields of Rancher's API audit log.

`AuditMiddleware` is a pure ASGI middleware that watches messages go by, copies at most
`BODY_LIMIT` bytes of each body (marking truncation) and never holds a message back, so streaming
responses and WebSockets behave exactly as without it. The record is handed to `AuditLog.write()`
once the response has gone, with its expensive parts still raw (header redaction, body redaction,
timestamp formatting happen in `audit_record.render_line`); the file I/O is the writer thread's.

Levels: 0 off, 1 metadata, 2 + request body, 3 + response body.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.server.audit_log import AuditLog
from corral.server.audit_record import RawBody, RawHeaders, Timestamp, render_line
from corral.server.audit_redact import REDACTED, redact_body, redact_headers
from corral.server.audit_settings import (
    LEVEL_REQUEST_BODY,
    LEVEL_RESPONSE_BODY,
    AuditSettings,
    resolve_log_path,
)

__all__ = [
    "BODY_LIMIT",
    "REDACTED",
    "AuditLog",
    "AuditMiddleware",
    "AuditSettings",
    "default_audited",
    "redact_body",
    "redact_headers",
    "render_line",
    "resolve_log_path",
]

#: Bytes of each body copied into a record; the rest passes through unrecorded.
BODY_LIMIT = 1024 * 1024
AUDITED_PREFIXES = ("/v3", "/v3-public", "/meta")
# ASGI: a WebSocket closed before it was accepted is answered with HTTP 403.
_WEBSOCKET_DENIED = 403
_WEBSOCKET_ACCEPTED = 101


# IDs from a seeded PRNG, not uuid4(): os.urandom releases the GIL on every call, which is a
# chance for any other thread to hold the event loop up. Audit IDs need uniqueness, not secrecy.
_ids = random.Random()


def new_audit_id() -> str:
    """A random (version 4) UUID string."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def default_audited(path: str) -> bool:
    """True for the API: `/v3`, `/v3-public`, `/meta` and everything under them."""
    return any(path == p or path.startswith(p + "/") for p in AUDITED_PREFIXES)


def _request_uri(scope: Scope) -> str:
    raw = scope.get("raw_path")
    uri = raw.decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string")
    return f"{uri}?{query.decode('latin-1')}" if query else uri


def _remote_addr(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


def _user(scope: Scope) -> dict[str, Any]:
    state = scope.get("state")
    user = state.get("user") if isinstance(state, dict) else None
    if not isinstance(user, dict):
        return {"name": "", "group": []}
    groups = user.get("group")
    return {
        "name": str(user.get("name", "")),
        "group": [str(g) for g in groups] if isinstance(groups, list | tuple) else [],
    }


class _Exchange:
    """One audited request/response as it happens; `record()` builds the line's dict."""

    __slots__ = (
        "code", "req_body", "req_headers", "resp_body", "resp_headers", "scope", "started",
    )

    def __init__(self, scope: Scope, level: int) -> None:
        self.scope = scope
        self.started = time.time()
        self.req_headers = RawHeaders(list(scope.get("headers", ())))
        self.req_body = RawBody(self.req_headers) if level >= LEVEL_REQUEST_BODY else None
        self.resp_headers = RawHeaders([])
        self.resp_body = (
            RawBody(self.resp_headers, from_server=True) if level >= LEVEL_RESPONSE_BODY else None
        )
        self.code = 0

    def response_started(self, status: int, headers: Any) -> None:
        self.code = status
        self.resp_headers.pairs = list(headers or ())

    def record(self) -> dict[str, Any]:
        scope = self.scope
        record: dict[str, Any] = {
            "auditID": new_audit_id(),
            "requestURI": _request_uri(scope),
            "user": _user(scope),
            "method": scope.get("method", "GET"),
            "remoteAddr": _remote_addr(scope),
            "requestTimestamp": Timestamp(self.started),
            "responseTimestamp": Timestamp(time.time()),
            "responseCode": self.code,
            "requestHeader": self.req_headers,
            "responseHeader": self.resp_headers,
        }
        for name, body in (("requestBody", self.req_body), ("responseBody", self.resp_body)):
            if body is not None and body.size:
                record[name] = body
                if body.truncated:
                    record[name + "Truncated"] = True
        return record


class AuditMiddleware:
    """Records audited HTTP requests and WebSocket handshakes to an AuditLog (None or level 0:
    a plain pass-through)."""

    def __init__(
        self,
        app: ASGIApp,
        log: AuditLog | None,
        *,
        audited: Callable[[str], bool] = default_audited,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self.app = app
        self.log = log if log is not None and log.settings.enabled else None
        self.level = self.log.settings.level if self.log is not None else 0
        self.audited = audited
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if self.log is None or kind not in ("http", "websocket") or not self.audited(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not isinstance(scope.get("state"), dict):
            scope["state"] = {}  # the auth layer sets state["user"] in this same dict
        if kind == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.log is not None
        exchange = _Exchange(scope, self.level)
        limit = self.body_limit
        req_body, resp_body = exchange.req_body, exchange.resp_body

        async def receive_copying() -> Message:
            message = await receive()
            if req_body is not None and message["type"] == "http.request":
                req_body.add(message.get("body", b""), limit)
            return message

        async def send_copying(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.response_started(message["status"], message.get("headers"))
            elif resp_body is not None and kind == "http.response.body":
                resp_body.add(message.get("body", b""), limit)
            await send(message)

        try:
            await self.app(scope, receive_copying, send_copying)
        except BaseException:
            if exchange.code == 0:
                exchange.code = 500
            raise
        finally:
            self.log.write(exchange.record())

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The handshake is the audited request: written when it is accepted (101) or denied
        (403, or the app's own denial response); the messages after it are not recorded."""
        assert self.log is not None
        log = self.log
        exchange = _Exchange(scope, min(self.level, LEVEL_REQUEST_BODY - 1))
        written = False

        def finish() -> None:
            nonlocal written
            if not written:
                written = True
                log.write(exchange.record())

        async def send_watching(message: Message) -> None:
            if not written:
                kind = message["type"]
                if kind == "websocket.accept":
                    exchange.response_started(_WEBSOCKET_ACCEPTED, message.get("headers"))
                    finish()
                elif kind == "websocket.close":
                    exchange.response_started(_WEBSOCKET_DENIED, ())
                    finish()
                elif kind == "websocket.http.response.start":
                    exchange.response_started(message["status"], message.get("headers"))
            await send(message)

        try:
            await self.app(scope, receive, send_watching)
        except BaseException:
            if exchange.code == 0:
                exchange.code = 500
            raise
        finally:
            if exchange.code == 0:
                exchange.code = _WEBSOCKET_DENIED
            finish()
