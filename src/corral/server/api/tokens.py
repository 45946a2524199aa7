"""`/v3/tokens`: the caller's own tokens (list, read, create API keys, delete = logout) and
`POST /v3/tokens?action=logout`, which deletes the token in use and clears the cookie."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.server.api.envelope import Links, resource_links
from corral.server.api.errors import NotFound
from corral.server.api.http import (
    ApiEndpoint,
    action_of,
    collection_response,
    json_response,
    links_for,
    read_json,
    require_principal,
    validate,
)
from corral.server.api.schemas import TokenCreate
from corral.server.auth import SESSION_COOKIE
from corral.server.domain.clock import iso_time, now_ms
from corral.server.domain.records import TOKENS, Record
from corral.server.domain.tokens import Principal, Tokens, token_expired

RESOURCE_TYPE = "token"
OUTPUT_ONLY = frozenset({"id", "type", "links", "actions", "created", "name", "userId", "token"})


def render_token(record: Record, links: Links, principal: Principal | None) -> dict[str, Any]:
    """The public form of a token: never its secret or digest."""
    data = record.data
    expires = int(data.get("expiresAtMs") or 0)
    return {
        "id": record.id,
        "type": RESOURCE_TYPE,
        "name": record.id,
        "userId": data.get("userId", ""),
        "description": data.get("description", ""),
        "authProvider": "local",
        "isDerived": data.get("kind") == "apikey",
        "ttl": int(data.get("ttl") or 0),
        "expiresAt": iso_time(expires) if expires else "",
        "expired": token_expired(data, now_ms()),
        "current": bool(principal and principal.token_id == record.id),
        "created": data.get("created", ""),
        "links": resource_links(links, TOKENS, record.id, update=False, remove=True),
    }


def token_visible(principal: Principal, record: Record) -> bool:
    """Everyone sees only their own tokens."""
    return record.data.get("userId") == principal.user_id


def clear_session_cookie(response: Response) -> None:
    """Expire the `R_SESS` cookie in the browser."""
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")


class TokensAPI:
    """Handlers of the tokens collection and its items."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def routes(self) -> list[BaseRoute]:
        """`/v3/tokens` and `/v3/tokens/{id}`."""
        return [
            Route(
                "/v3/tokens",
                ApiEndpoint(
                    {"GET": self.list, "POST": self.create_or_logout},
                    bodies={"POST": (TokenCreate,)},
                ),
                name="tokens",
            ),
            Route(
                "/v3/tokens/{id}",
                ApiEndpoint({"GET": self.get, "DELETE": self.delete}),
                name="token",
            ),
        ]

    async def _load(self, request: Request, principal: Principal) -> Record:
        record = await self.tokens.get(request.path_params["id"])
        if record is None or not token_visible(principal, record):
            raise NotFound(f"token {request.path_params['id']!r} not found")
        return record

    async def list(self, request: Request) -> Response:
        """The caller's tokens."""
        principal = require_principal(request)
        records, revision = await self.tokens.list()
        links = links_for(request)
        items = [render_token(r, links, principal) for r in records if token_visible(principal, r)]
        return collection_response(
            request,
            resource_type=RESOURCE_TYPE,
            collection=TOKENS,
            items=items,
            revision=revision,
            create_allowed=True,
        )

    async def create_or_logout(self, request: Request) -> Response:
        """Create an API key for the caller (its secret is shown only now), or
        `?action=logout`: delete the token in use and clear the session cookie."""
        principal = require_principal(request)
        if action_of(request, ("logout",)) == "logout":
            await self.tokens.revoke(principal.token_id)
            response = json_response({"type": "logout", "message": "logged out"})
            clear_session_cookie(response)
            return response
        body = validate(TokenCreate, await read_json(request), OUTPUT_ONLY)
        record, full_token = await self.tokens.issue(
            principal.user_id, ttl_ms=body.ttl, description=body.description, kind="apikey"
        )
        rendered = render_token(record, links_for(request), principal)
        rendered["token"] = full_token
        return json_response(rendered, 201)

    async def get(self, request: Request) -> Response:
        """One of the caller's tokens."""
        principal = require_principal(request)
        record = await self._load(request, principal)
        return json_response(render_token(record, links_for(request), principal))

    async def delete(self, request: Request) -> Response:
        """Delete one of the caller's tokens (deleting the one in use logs out)."""
        principal = require_principal(request)
        record = await self._load(request, principal)
        if not await self.tokens.delete(record):
            raise NotFound(f"token {record.id!r} not found")
        response = json_response(render_token(record, links_for(request), principal))
        if record.id == principal.token_id:
            clear_session_cookie(response)
        return response


__all__ = ["TokensAPI", "render_token", "token_visible"]
