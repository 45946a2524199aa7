"""CSRF protection for the cookie-authenticated browser UI: Rancher's double-submit cookie.

A browser gets a random `CSRF` cookie (readable by the page's scripts, `Secure`,
`SameSite=Strict`) on its first response; a state-changing request (any method but GET, HEAD
and OPTIONS) that a browser authenticates with the `R_SESS` session cookie must echo that value
in the `X-API-CSRF` header, or it is refused with Rancher's `422 InvalidCSRFToken` before it
reaches a route. A cross-site page can make the browser send the cookies but cannot read them,
so it cannot produce the header.

Not checked (Rancher does the same): requests carrying `Authorization` (Bearer or Basic: a
cross-site page cannot add that header) and requests without the session cookie. A client is
taken for a browser when its `User-Agent` says `Mozilla` (Rancher's rule) or it sends the
`Origin` or `Sec-Fetch-Site` headers only browsers add; API clients such as curl or httpx that
present the cookie themselves are not CSRF victims and are not asked for the header.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.server.api.envelope import error_body
from corral.server.auth import SESSION_COOKIE

CSRF_COOKIE = "CSRF"
CSRF_HEADER = "X-API-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_STATUS = 422  # Rancher's httperror.InvalidCSRFToken
CSRF_CODE = "InvalidCSRFToken"
TOKEN_BYTES = 16


def request_cookies(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Every cookie of a request's `Cookie` headers (a malformed header is skipped)."""
    found: dict[str, str] = {}
    for name, value in headers:
        if name != b"cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except CookieError:
            continue
        for key, morsel in jar.items():
            found.setdefault(key, morsel.value)
    return found


def header_value(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    """The first value of a (lower-case) header, or None."""
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


def looks_like_browser(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A `Mozilla` User-Agent, or the `Origin` / `Sec-Fetch-Site` headers browsers add."""
    pairs = list(headers)
    agent = (header_value(pairs, b"user-agent") or "").lower()
    return (
        "mozilla" in agent
        or header_value(pairs, b"origin") is not None
        or header_value(pairs, b"sec-fetch-site") is not None
    )


def csrf_problem(method: str, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a request must be refused, or None when it may go on (the rule in the docstring)."""
    pairs = list(headers)
    if method.upper() in SAFE_METHODS or header_value(pairs, b"authorization"):
        return None
    cookies = request_cookies(pairs)
    if SESSION_COOKIE not in cookies or not looks_like_browser(pairs):
        return None
    expected = cookies.get(CSRF_COOKIE, "")
    sent = header_value(pairs, CSRF_HEADER.lower().encode()) or ""
    if not expected:
        return (f"no {CSRF_COOKIE} cookie: load the UI (any page) to get one, then send its "
                f"value in the {CSRF_HEADER} header")
    if not sent:
        return f"the {CSRF_HEADER} header is missing: send the {CSRF_COOKIE} cookie's value in it"
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        return f"the {CSRF_HEADER} header does not match the {CSRF_COOKIE} cookie"
    return None


def new_csrf_cookie() -> str:
    """A `Set-Cookie` value with a fresh random token."""
    token = secrets.token_hex(TOKEN_BYTES)
    return f"{CSRF_COOKIE}={token}; Path=/; Secure; SameSite=Strict"


class CsrfMiddleware:
    """Pure ASGI middleware: refuses cookie-authenticated browser writes without the token and
    hands browsers that have no `CSRF` cookie a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", ()))
        problem = csrf_problem(scope.get("method", "GET"), headers)
        give_cookie = CSRF_COOKIE not in request_cookies(headers) and looks_like_browser(headers)
        if problem is not None:
            await self._refuse(problem, give_cookie, send)
            return
        if not give_cookie:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", new_csrf_cookie())
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    async def _refuse(problem: str, give_cookie: bool, send: Send) -> None:
        body = json.dumps(error_body(CSRF_STATUS, CSRF_CODE, f"Invalid CSRF token: {problem}"))
        raw = body.encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        if give_cookie:
            headers.append((b"set-cookie", new_csrf_cookie().encode()))
        await send({"type": "http.response.start", "status": CSRF_STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": raw})
