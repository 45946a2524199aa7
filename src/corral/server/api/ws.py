"""WebSocket handshake checks shared by `/v3/subscribe` and the shell: who is calling, a
same-origin check for browsers, and refusing with the error envelope before accepting."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.websockets import WebSocket

from corral.server.api.envelope import DEFAULT_PORTS
from corral.server.api.errors import APIError, Forbidden
from corral.server.api.http import links_for, require_admin, require_principal
from corral.server.domain.tokens import Principal

POLICY_VIOLATION = 1008


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, the default port filled in; None when it has none."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def origin_allowed(origin: str | None, base: str) -> bool:
    """A browser's Origin must be the origin (scheme, host and port) the request came to: no
    cross-site WebSocket riding on the session cookie, and `null` or an unparsable Origin is
    refused; non-browser clients send no Origin."""
    if not origin:
        return True
    seen = _origin_of(origin)
    return seen is not None and seen == _origin_of(base)


async def deny(websocket: WebSocket, error: APIError) -> None:
    """Refuse the handshake with the error envelope as an HTTP answer when the server supports
    it (uvicorn does), else close with 1008 and the message as reason."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error.response())
    else:
        await websocket.close(code=POLICY_VIOLATION, reason=error.message[:120])


def handshake_principal(websocket: WebSocket, *, admin: bool) -> Principal:
    """The caller of a WebSocket (admin when asked); raises the APIError to deny with."""
    principal = require_admin(websocket) if admin else require_principal(websocket)
    if not origin_allowed(websocket.headers.get("origin"), links_for(websocket).base):
        raise Forbidden("the Origin of this WebSocket does not match the server it was sent to")
    return principal
