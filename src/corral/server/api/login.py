"""`/v3-public/localProviders[/local]`: the local auth provider and its `login` action.

A successful login answers 201 with the token resource including `token: token-xxxxx:<secret>`,
or, with `responseType: "cookie"`, 200 with the `R_SESS` cookie set and no secret in the body.
A wrong password and an unknown user get the same 401.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.server.api.envelope import Links
from corral.server.api.errors import InvalidAction, Unauthorized
from corral.server.api.http import (
    ApiEndpoint,
    action_of,
    collection_response,
    json_response,
    links_for,
    read_json,
    validate,
)
from corral.server.api.schemas import LoginInput
from corral.server.api.tokens import render_token
from corral.server.auth import SESSION_COOKIE
from corral.server.domain.settings import SESSION_TTL_SETTING, Settings
from corral.server.domain.tokens import Tokens, principal_for
from corral.server.domain.users import Users

PROVIDERS = "localProviders"
LOGIN_FAILED = "invalid username or password"


def render_provider(links: Links) -> dict[str, Any]:
    """The local provider resource with its login action."""
    url = f"{links.collection(PROVIDERS, public=True)}/local"
    return {
        "id": "local",
        "type": "localProvider",
        "name": "local",
        "links": {"self": url},
        "actions": {"login": links.action(url, "login")},
    }


def session_ttl_ms(requested_ms: int, session_minutes: int) -> int:
    """The lifetime of a login token: the requested ttl capped at the session setting
    (0 asks for the setting's value)."""
    cap = session_minutes * 60_000
    return cap if requested_ms <= 0 else min(requested_ms, cap)


class LoginAPI:
    """Handlers of the public login endpoints."""

    def __init__(self, users: Users, tokens: Tokens, settings: Settings) -> None:
        self.users = users
        self.tokens = tokens
        self.settings = settings

    def routes(self) -> list[BaseRoute]:
        """`/v3-public/localProviders` and `/v3-public/localProviders/local`."""
        return [
            Route(
                "/v3-public/localProviders",
                ApiEndpoint({"GET": self.list}),
                name="localProviders",
            ),
            Route(
                "/v3-public/localProviders/local",
                ApiEndpoint({"GET": self.get, "POST": self.login}, bodies={"POST": (LoginInput,)}),
                name="localProvider",
            ),
        ]

    async def list(self, request: Request) -> Response:
        """The auth providers (just `local`)."""
        return collection_response(
            request,
            resource_type="localProvider",
            collection=PROVIDERS,
            items=[render_provider(links_for(request))],
            revision=None,
            create_allowed=False,
        )

    async def get(self, request: Request) -> Response:
        """The local provider."""
        return json_response(render_provider(links_for(request)))

    async def login(self, request: Request) -> Response:
        """`?action=login`: check the password, issue a token (or set the cookie)."""
        if action_of(request, ("login",)) != "login":
            raise InvalidAction("POST here needs ?action=login")
        body = validate(LoginInput, await read_json(request), frozenset())
        user = await self.users.check_password(body.username, body.password)
        if user is None:
            raise Unauthorized(LOGIN_FAILED)
        minutes = int(await self.settings.value(SESSION_TTL_SETTING))
        ttl = session_ttl_ms(body.ttl, minutes)
        record, full_token = await self.tokens.issue(
            user.id, ttl_ms=ttl, description=body.description, kind="session"
        )
        rendered = render_token(record, links_for(request), principal_for(user, record.id))
        if body.responseType == "cookie":
            response = json_response(rendered, 200)
            response.set_cookie(
                SESSION_COOKIE,
                full_token,
                max_age=ttl // 1000,
                path="/",
                secure=True,
                httponly=True,
                samesite="lax",
            )
            return response
        rendered["token"] = full_token
        return json_response(rendered, 201)
