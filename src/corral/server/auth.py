"""Authentication of every request: Bearer / Basic / `R_SESS` cookie → Principal.

`AuthMiddleware` only identifies the caller; routes that need a login answer 401 themselves
(`corral.server.api.http.require_principal`), or 503 when the store could not be asked about the
presented token (routes that need no login still answer). It also sets `scope["state"]["user"]`
for the audit log: `{"name": <username>, "group": [...]}` (the anonymous user when nobody
logged in).
"""

from __future__ import annotations

import base64
import binascii
import os
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from corral.server.context import ServerContext
from corral.server.domain.credentials import new_password
from corral.server.domain.tokens import Principal
from corral.store.base import StoreError

SESSION_COOKIE = "R_SESS"
BOOTSTRAP_PASSWORD_ENV = "CORRAL_BOOTSTRAP_PASSWORD"
PRINCIPAL_STATE_KEY = "corral.principal"
AUTH_ERROR_STATE_KEY = "corral.auth_error"
STORE_ERROR_STATE_KEY = "corral.auth_store_error"
ANONYMOUS_USER: dict[str, Any] = {"name": "system:anonymous", "group": ["system:unauthenticated"]}


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The `token-xxxxx:secret` a request presents: `Authorization: Bearer …`,
    `Authorization: Basic base64(token-xxxxx:secret)`, or the `R_SESS` cookie (the header wins)."""
    authorization = None
    cookie_headers: list[str] = []
    for name, value in headers:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1").strip()
        elif name == b"cookie":
            cookie_headers.append(value.decode("latin-1"))
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer":
            return credentials
        if scheme == "basic":
            try:
                return base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return ""
        return ""
    for header in cookie_headers:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        if SESSION_COOKIE in jar:
            return jar[SESSION_COOKIE].value
    return None


def principal_of(scope: Scope) -> Principal | None:
    """The caller AuthMiddleware identified, or None."""
    principal = scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    return principal if isinstance(principal, Principal) else None


def auth_error_of(scope: Scope) -> str | None:
    """Why presented credentials were refused (None when none were presented)."""
    error = scope.get("state", {}).get(AUTH_ERROR_STATE_KEY)
    return error if isinstance(error, str) else None


def store_error_of(scope: Scope) -> StoreError | None:
    """The store's error when the presented credentials could not be checked."""
    error = scope.get("state", {}).get(STORE_ERROR_STATE_KEY)
    return error if isinstance(error, StoreError) else None


class AuthMiddleware:
    """Pure ASGI middleware: identifies the caller of HTTP and WebSocket requests."""

    def __init__(self, app: ASGIApp, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        token = token_from_headers(scope.get("headers", []))
        principal: Principal | None = None
        error: str | None = None
        store_error: StoreError | None = None
        if token is not None:
            try:
                result = await self.ctx.tokens.authenticate(token)
            except StoreError as exc:
                store_error = exc
                error = "the store could not be asked about the token"
            else:
                if isinstance(result, Principal):
                    principal = result
                else:
                    error = result
        state["user"] = principal.audit_user() if principal else dict(ANONYMOUS_USER)
        state[PRINCIPAL_STATE_KEY] = principal
        state[AUTH_ERROR_STATE_KEY] = error
        state[STORE_ERROR_STATE_KEY] = store_error
        await self.app(scope, receive, send)


async def bootstrap_admin(ctx: ServerContext) -> str | None:
    """Create the `admin` user on first start and return its password so the CLI can print it
    once; None when an admin was bootstrapped before, by this server or by another one sharing
    the store (`Users.bootstrap_admin` decides that in one transaction, so of several servers
    starting together exactly one creates the user and prints the password).

    The password comes from CORRAL_BOOTSTRAP_PASSWORD (then mustChangePassword is false) or is
    generated (mustChangePassword true); it is returned in both cases.
    """
    given = os.environ.get(BOOTSTRAP_PASSWORD_ENV, "")
    password = given or new_password()
    user = await ctx.users.bootstrap_admin(password, must_change_password=not given)
    return None if user is None else password
