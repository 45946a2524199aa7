"""API audit log: one JSON line per API request, with the fields of Rancher's API audit log.

`AuditMiddleware` is a pure ASGI middleware that watches messages go by, copies at most
`BODY_LIMIT` bytes of each body (marking truncation) and never holds a message back, so streaming
responses and WebSockets behave exactly as without it. The `Exchange` is handed to
`AuditLog.write()` once the response has gone, with its expensive parts still raw; it renders
itself there (header redaction, body redaction, timestamp formatting) straight to the JSON line
that `audit_record.render_line(exchange.record())` would write, without building the dict or
calling the encoder back per value. The file I/O is the writer thread's.

Levels: 0 off, 1 metadata, 2 + request body, 3 + response body.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.server.audit_log import AuditLog
from corral.server.audit_record import (
    RawBody,
    RawHeaders,
    Timestamp,
    format_timestamp,
    json_string,
    render_line,
    render_value,
)
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
# uuid.UUID(int=n, version=4) without building the UUID: clear the version and variant bits,
# set version 4 and the RFC 4122 variant.
_ID_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_ID_SET = (4 << 76) | (0x8000 << 48)
_NO_USER = '{"name":"","group":[]}'


def new_audit_id() -> str:
    """A random (version 4) UUID string."""
    digits = "%032x" % (_ids.getrandbits(128) & _ID_KEEP | _ID_SET)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


_AUDITED_UNDER = tuple(prefix + "/" for prefix in AUDITED_PREFIXES)


def default_audited(path: str) -> bool:
    """True for the API: `/v3`, `/v3-public`, `/meta` and everything under them."""
    return path.startswith(_AUDITED_UNDER) or path in AUDITED_PREFIXES


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


def _user_json(scope: Scope) -> str:
    """`_user(scope)` as the encoder writes it."""
    state = scope.get("state")
    user = state.get("user") if isinstance(state, dict) else None
    if not isinstance(user, dict):
        return _NO_USER
    groups = user.get("group")
    group = ",".join([json_string(str(g)) for g in groups]) if isinstance(
        groups, list | tuple) else ""
    return f'{{"name":{json_string(str(user.get("name", "")))},"group":[{group}]}}'


def _json(value: object) -> str:
    """A str or an int as the encoder writes it; anything else through the encoder itself."""
    if isinstance(value, str):
        return json_string(value)
    return str(value) if type(value) is int else render_value(value)


class Exchange:
    """One audited request/response (or WebSocket handshake) as it happens.

    `record()` is the record as a dict of placeholders (what `render_line(record())` writes);
    `render_line()` writes the same line directly, which is what the log gets: no dict, no
    encoder callbacks. Both use the ID and the response time `finish()` fixed."""

    __slots__ = (
        "audit_id", "code", "finished", "req_body", "req_headers", "resp_body", "resp_headers",
        "scope", "started",
    )

    def __init__(self, scope: Scope, level: int) -> None:
        self.scope = scope
        self.started = time.time()
        self.finished = self.started
        self.audit_id = ""
        self.req_headers = RawHeaders(list(scope.get("headers", ())))
        self.req_body = RawBody(self.req_headers) if level >= LEVEL_REQUEST_BODY else None
        self.resp_headers = RawHeaders([])
        self.resp_body = (
            RawBody(self.resp_headers, from_server=True) if level >= LEVEL_RESPONSE_BODY else None
        )
        self.code = 0

    def response_started(self, status: int, headers: Any) -> None:
        """The response's status and headers, as the app sent them."""
        self.code = status
        self.resp_headers.pairs = list(headers or ())

    def finish(self) -> Exchange:
        """Stamp the response time and the audit ID; returns self (for `AuditLog.write`)."""
        self.finished = time.time()
        self.audit_id = new_audit_id()
        return self

    def _bodies(self) -> list[tuple[str, RawBody]]:
        return [
            (name, body)
            for name, body in (("requestBody", self.req_body), ("responseBody", self.resp_body))
            if body is not None and body.size
        ]

    def record(self) -> dict[str, Any]:
        """The record as a dict: every field in order, the bodies (and truncation flags) last."""
        scope = self.scope
        record: dict[str, Any] = {
            "auditID": self.audit_id,
            "requestURI": _request_uri(scope),
            "user": _user(scope),
            "method": scope.get("method", "GET"),
            "remoteAddr": _remote_addr(scope),
            "requestTimestamp": Timestamp(self.started),
            "responseTimestamp": Timestamp(self.finished),
            "responseCode": self.code,
            "requestHeader": self.req_headers,
            "responseHeader": self.resp_headers,
        }
        for name, body in self._bodies():
            record[name] = body
            if body.truncated:
                record[name + "Truncated"] = True
        return record

    def render_line(self) -> bytes:
        """Exactly `audit_record.render_line(self.record())`, written without the encoder."""
        scope = self.scope
        head = "".join([
            '{"auditID":', json_string(self.audit_id),
            ',"requestURI":', json_string(_request_uri(scope)),
            ',"user":', _user_json(scope),
            ',"method":', _json(scope.get("method", "GET")),
            ',"remoteAddr":', json_string(_remote_addr(scope)),
            ',"requestTimestamp":"', format_timestamp(self.started),
            '","responseTimestamp":"', format_timestamp(self.finished),
            '","responseCode":', _json(self.code),
            ',"requestHeader":', self.req_headers.render_json(),
            ',"responseHeader":', self.resp_headers.render_json(),
        ])
        bodies = self._bodies()
        if not bodies:
            return (head + "}\n").encode()
        for name, body in bodies:
            if body.truncated:
                head += f',"{name}Truncated":true'
        parts = [head.encode()]
        for name, body in bodies:
            parts += [f',"{name}":'.encode(), body.render_json()]
        parts.append(b"}\n")
        return b"".join(parts)


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
        exchange = Exchange(scope, self.level)
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
            self.log.write(exchange.finish())

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The handshake is the audited request: written when it is accepted (101) or denied
        (403, or the app's own denial response); the messages after it are not recorded."""
        assert self.log is not None
        log = self.log
        exchange = Exchange(scope, min(self.level, LEVEL_REQUEST_BODY - 1))
        written = False

        def finish() -> None:
            nonlocal written
            if not written:
                written = True
                log.write(exchange.finish())

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
