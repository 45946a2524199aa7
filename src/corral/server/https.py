"""The plain-HTTP listener's rules: pass through, redirect to HTTPS, or refuse.

The rules are Rancher's (dynamiclistener's `HTTPRedirect`), plus a guard against open redirects:

* pass through when the connection is TLS, the first `X-Forwarded-Proto` value is `https` or
  `wss`, or the path starts with `/ping`, `/health` or `/.well-known/`;
* otherwise a method other than GET/HEAD gets `400 Use HTTPS`;
* GET/HEAD get `302 https://<host><uri>`, where a port in Host maps to
  `(port // 1000) * 1000 + 443` (80 → 443, 8080 → 8443) and no port stays no port;
* the redirect only ever names a host this server serves. When Host is missing, malformed or
  names a host the server does not serve, the target is the `server-url` origin (scheme, host and
  port as configured) with the same URI; with no `server-url` the answer is `400`.

`decide()` is the pure rule; `HttpsRedirectMiddleware` applies it to ASGI `http` and
`websocket` scopes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

PASS_THROUGH_PREFIXES = ("/ping", "/health", "/.well-known/")
SECURE_FORWARDED_PROTOS = frozenset({"https", "wss"})
REDIRECT_METHODS = frozenset({"GET", "HEAD"})
REDIRECT_STATUS = 302
USE_HTTPS = "Use HTTPS"
UNKNOWN_HOST = "Use HTTPS: the Host header does not name this server and no server-url is set"

_DNS_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?")
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class PassThrough:
    """Hand the request to the application."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer `302` with this `Location`."""

    location: str
    status: int = REDIRECT_STATUS


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer with this status and a plain-text message."""

    status: int
    message: str


Decision = PassThrough | Redirect | Reject
PASS = PassThrough()


@dataclass(frozen=True, slots=True)
class HostPort:
    """A parsed Host header: lower-case name (IPv6 without brackets) and optional port."""

    name: str
    port: int | None

    def authority(self) -> str:
        """The name (bracketed when IPv6) and port as they go into a URL."""
        host = f"[{self.name}]" if ":" in self.name else self.name
        return host if self.port is None else f"{host}:{self.port}"


def https_port_for(port: int) -> int:
    """The HTTPS port that goes with an HTTP port: 80 → 443, 8080 → 8443, 9080 → 9443."""
    return (port // 1000) * 1000 + 443


def parse_host(host: str) -> HostPort | None:
    """Parse a Host header value (`name`, `name:port`, `1.2.3.4:80`, `[::1]:80`); None if malformed.

    An empty port (`name:`) counts as no port; a trailing dot on the name is dropped.
    """
    text = host.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1 :]
        try:
            name = str(ipaddress.IPv6Address(name.split("%", 1)[0]))
        except ValueError:
            return None
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        name, _, port_text = text.partition(":")
        if ":" in port_text:
            return None  # an unbracketed IPv6 address is not a valid Host
        name = name.rstrip(".").lower()
        if not _DNS_NAME.fullmatch(name) or ".." in name:
            return None
    if not port_text:
        return HostPort(name, None)
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        return None
    return HostPort(name, int(port_text))


def request_uri(path: str, query: str) -> str:
    """`path?query` as the client sent it (path `/` when empty)."""
    path = path if path.startswith("/") else "/" + path
    return f"{path}?{query}" if query else path


def is_forwarded_secure(forwarded_proto: str | None) -> bool:
    """True when the first `X-Forwarded-Proto` value (first element of a list) is https or wss."""
    if not forwarded_proto:
        return False
    return forwarded_proto.split(",", 1)[0].strip().lower() in SECURE_FORWARDED_PROTOS


def decide(
    *,
    method: str,
    path: str,
    query: str,
    host: str | None,
    raw_path: str | None = None,
    tls: bool,
    forwarded_proto: str | None,
    is_served: Callable[[str], bool],
    server_url: str,
) -> Decision:
    """The HTTP listener's answer for one request (see the module docstring for the table).

    `path` is the decoded path the prefix rules look at; `raw_path` (default `path`) and `query`
    are the request target as the client sent it, reused in the redirect; `host` is the Host
    header (None when absent or repeated); `is_served(name)` says whether a lower-case host name
    or address is one this server serves; `server_url` is the `server-url` setting or "".
    """
    if tls or is_forwarded_secure(forwarded_proto) or path.startswith(PASS_THROUGH_PREFIXES):
        return PASS
    if method.upper() not in REDIRECT_METHODS:
        return Reject(400, USE_HTTPS)
    uri = request_uri(path if raw_path is None else raw_path, query)
    parsed = parse_host(host) if host is not None else None
    if parsed is not None and is_served(parsed.name):
        port = None if parsed.port is None else https_port_for(parsed.port)
        return Redirect(f"https://{HostPort(parsed.name, port).authority()}{uri}")
    origin = server_url_origin(server_url)
    if origin:
        return Redirect(origin + uri)
    return Reject(400, UNKNOWN_HOST)


def server_url_origin(server_url: str) -> str:
    """`https://host[:port]` of the server-url setting, "" when unset or unusable."""
    if not server_url:
        return ""
    parts = urlsplit(server_url.strip())
    if not parts.hostname:
        return ""
    parsed = parse_host(parts.netloc.rpartition("@")[2])
    if parsed is None:
        return ""
    return f"https://{parsed.authority()}"


def _header(scope: Scope, name: bytes) -> tuple[str | None, int]:
    """The first value of header `name` and how many times it occurs."""
    first: str | None = None
    count = 0
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            count += 1
            if first is None:
                first = value.decode("latin-1")
    return first, count


class HttpsRedirectMiddleware:
    """ASGI middleware applying `decide()` to every HTTP request and WebSocket handshake."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        is_served: Callable[[str], bool],
        server_url: Callable[[], str],
    ) -> None:
        self.app = app
        self.is_served = is_served
        self.server_url = server_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        decision = self.decide(scope)
        if isinstance(decision, PassThrough):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await _send_http(send, decision, head_only=scope["method"] == "HEAD")
        else:
            await _refuse_websocket(scope, send, decision)

    def decide(self, scope: Scope) -> Decision:
        """The decision for one ASGI scope."""
        host, host_count = _header(scope, b"host")
        forwarded_proto, _ = _header(scope, b"x-forwarded-proto")
        raw_path: bytes | None = scope.get("raw_path")
        return decide(
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            raw_path=raw_path.decode("latin-1") if raw_path else None,
            query=scope.get("query_string", b"").decode("latin-1"),
            host=host if host_count == 1 else None,
            tls=scope.get("scheme") in ("https", "wss"),
            forwarded_proto=forwarded_proto,
            is_served=self.is_served,
            server_url=self.server_url(),
        )


def _response_parts(decision: Redirect | Reject) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    if isinstance(decision, Redirect):
        location = decision.location.encode("latin-1")
        body = b'<a href="' + location.replace(b'"', b"%22") + b'">Found</a>.\n\n'
        headers = [(b"location", location), (b"content-type", b"text/html; charset=utf-8")]
        return decision.status, headers, body
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"x-content-type-options", b"nosniff"),
    ]
    return decision.status, headers, decision.message.encode() + b"\n"


async def _send_http(send: Send, decision: Redirect | Reject, *, head_only: bool) -> None:
    status, headers, body = _response_parts(decision)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def _refuse_websocket(scope: Scope, send: Send, decision: Redirect | Reject) -> None:
    extensions: dict[str, Any] = scope.get("extensions") or {}
    if "websocket.http.response" not in extensions:
        await send({"type": "websocket.close", "code": 1008})
        return
    status, headers, body = _response_parts(decision)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
