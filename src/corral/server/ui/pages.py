"""The UI's HTML page and static files, with the security headers a cookie UI needs.

Every page of the UI is the same document (`static/index.html`); its scripts route on the path,
so each page has a URL of its own and back/forward work. The paths below serve that document;
`/static/…` serves the package's files (ETag and Last-Modified, revalidated on each use so an
upgrade takes effect at once). Nothing is fetched from anywhere else: the Content-Security-Policy
says so to the browser.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).with_name("static")
INDEX = STATIC_DIR / "index.html"
# The paths of the UI's pages (main.js has the same list); anything else is not the UI's.
PAGE_PATHS = (
    "/", "/login", "/password", "/users", "/api-keys", "/settings", "/clusters",
    "/clusters/{id}", "/audit", "/shell",
)
# Scripts only from this server (no inline script, no eval); styles may be inline because
# xterm.js sizes its terminal with <style> elements it creates; WebSockets back to this origin.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
))
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-cache"),
)

for _suffix in (".js", ".mjs"):
    mimetypes.add_type("text/javascript", _suffix)
mimetypes.add_type("text/css", ".css")
mimetypes.add_type("image/svg+xml", ".svg")


class SecurityHeaders:
    """Pure ASGI wrapper adding SECURITY_HEADERS to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def index(request: Request) -> Response:
    """The UI's one HTML document (read each time: it is small and may be upgraded in place)."""
    return Response(INDEX.read_bytes(), media_type="text/html; charset=utf-8")


def page_routes() -> list[BaseRoute]:
    """Routes of the UI's pages and of `/static`."""
    page = SecurityHeaders(index_app)
    routes: list[BaseRoute] = [
        Route(path, page, methods=["GET", "HEAD"], name=f"ui-page{path}") for path in PAGE_PATHS
    ]
    static = StaticFiles(directory=STATIC_DIR, check_dir=True)
    routes.append(Mount("/static", app=SecurityHeaders(static), name="ui-static"))
    return routes


async def index_app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI form of `index` (so the security headers wrap it)."""
    response = await index(Request(scope, receive))
    await response(scope, receive, send)
