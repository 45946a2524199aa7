"""The server's ASGI application: routes and middleware in the order a request meets them.

    HttpsRedirectMiddleware   plain-HTTP requests: pass, 302 to HTTPS, or 400 (corral.server.https)
      AuthMiddleware          who is calling: sets scope["state"]["user"] (corral.server.auth)
        AuditMiddleware       one JSON line per API request (corral.server.audit)
          CsrfMiddleware      cookie-authenticated browser writes need X-API-CSRF
                              (corral.server.api.csrf)
            Starlette router  /ping /healthz /cacerts (corral.server.health), /diagnostics/*
                              (corral.server.diagnostics), the web UI (corral.server.ui)
                              + the v3 API
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp

from corral.server.api import build_routes
from corral.server.api.csrf import CsrfMiddleware
from corral.server.audit import AuditMiddleware
from corral.server.auth import AuthMiddleware
from corral.server.context import ServerContext
from corral.server.diagnostics import diagnostic_routes
from corral.server.health import health_routes
from corral.server.hostnames import ServedHosts
from corral.server.https import HttpsRedirectMiddleware
from corral.server.ui import ui_routes


def served_hosts(ctx: ServerContext) -> ServedHosts:
    """The Host names the HTTP listener may redirect to (see corral.server.hostnames)."""
    certificates = ctx.certificates
    return ServedHosts(
        server_url=lambda: ctx.server_url,
        certificate_covers=certificates.covers if certificates is not None else lambda _: False,
    )


def build_app(ctx: ServerContext) -> ASGIApp:
    """The whole server as one ASGI app, for both listeners."""
    router = Starlette(routes=[
        *health_routes(ctx), *diagnostic_routes(), *ui_routes(ctx), *build_routes(ctx),
    ])
    audited = AuditMiddleware(CsrfMiddleware(router), ctx.audit)
    authenticated = AuthMiddleware(audited, ctx)
    return HttpsRedirectMiddleware(
        authenticated, is_served=served_hosts(ctx), server_url=lambda: ctx.server_url
    )
