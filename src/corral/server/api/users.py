"""`/v3/users`: admins create, list, update and delete users; everyone reads themselves
(`?me=true`) and changes their own password (`POST /v3/users?action=changepassword`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.server.api.envelope import Links, resource_links
from corral.server.api.errors import (
    Forbidden,
    InvalidAction,
    InvalidBodyContent,
    NotFound,
    Unauthorized,
)
from corral.server.api.http import (
    ApiEndpoint,
    action_of,
    collection_response,
    json_response,
    links_for,
    read_json,
    require_admin,
    require_principal,
    validate,
)
from corral.server.api.schemas import (
    ChangePasswordInput,
    SetPasswordInput,
    UserCreate,
    UserUpdate,
)
from corral.server.domain.records import USERS, Record
from corral.server.domain.tokens import Principal
from corral.server.domain.users import Users

RESOURCE_TYPE = "user"
OUTPUT_ONLY = frozenset(
    {"id", "type", "links", "actions", "created", "username", "me", "principalIds", "uuid"}
)


def render_user(record: Record, links: Links, principal: Principal | None) -> dict[str, Any]:
    """The public form of a user (never the password hash)."""
    data = record.data
    admin = bool(principal and principal.admin)
    self_url = links.item(USERS, record.id)
    return {
        "id": record.id,
        "type": RESOURCE_TYPE,
        "username": data.get("username", ""),
        "name": data.get("name", ""),
        "description": data.get("description", ""),
        "enabled": bool(data.get("enabled", True)),
        "admin": bool(data.get("admin", False)),
        "mustChangePassword": bool(data.get("mustChangePassword", False)),
        "created": data.get("created", ""),
        "principalIds": [f"local://{record.id}"],
        "me": bool(principal and principal.user_id == record.id),
        "links": resource_links(
            links,
            USERS,
            record.id,
            update=admin,
            remove=admin and not (principal and principal.user_id == record.id),
        ),
        "actions": {"setpassword": links.action(self_url, "setpassword")} if admin else {},
    }


def user_visible(principal: Principal, record: Record) -> bool:
    """Admins see every user; others only themselves."""
    return principal.admin or principal.user_id == record.id


class UsersAPI:
    """Handlers of the users collection and its items."""

    def __init__(self, users: Users) -> None:
        self.users = users

    def routes(self) -> list[BaseRoute]:
        """`/v3/users` and `/v3/users/{id}`."""
        return [
            Route(
                "/v3/users",
                ApiEndpoint(
                    {"GET": self.list, "POST": self.create_or_action},
                    bodies={"POST": (UserCreate, ChangePasswordInput)},
                ),
                name="users",
            ),
            Route(
                "/v3/users/{id}",
                ApiEndpoint(
                    {
                        "GET": self.get,
                        "PUT": self.update,
                        "DELETE": self.delete,
                        "POST": self.item_action,
                    },
                    bodies={"PUT": (UserUpdate,), "POST": (SetPasswordInput,)},
                ),
                name="user",
            ),
        ]

    async def _load(self, request: Request, principal: Principal) -> Record:
        record = await self.users.get(request.path_params["id"])
        if record is None or not user_visible(principal, record):
            raise NotFound(f"user {request.path_params['id']!r} not found")
        return record

    async def list(self, request: Request) -> Response:
        """Admins list every user; `?me=true` lists just the caller (anyone logged in)."""
        principal = require_principal(request)
        me_only = request.query_params.get("me") == "true"
        if not me_only and not principal.admin:
            raise Forbidden("listing users needs the admin role; use ?me=true for yourself")
        records, revision = await self.users.list()
        links = links_for(request)
        items = [
            render_user(r, links, principal)
            for r in records
            if user_visible(principal, r) and (not me_only or r.id == principal.user_id)
        ]
        return collection_response(
            request,
            resource_type=RESOURCE_TYPE,
            collection=USERS,
            items=items,
            revision=revision,
            create_allowed=principal.admin,
        )

    async def create_or_action(self, request: Request) -> Response:
        """Create a user (admin), or `?action=changepassword` for the caller."""
        if action_of(request, ("changepassword",)) == "changepassword":
            return await self.change_password(request)
        principal = require_admin(request)
        body = validate(UserCreate, await read_json(request), frozenset({"type"}))
        record = await self.users.create(
            username=body.username,
            password=body.password,
            name=body.name,
            description=body.description,
            admin=body.admin,
            enabled=body.enabled,
            must_change_password=body.mustChangePassword,
        )
        return json_response(render_user(record, links_for(request), principal), 201)

    async def change_password(self, request: Request) -> Response:
        """The caller changes their own password (the current one is required)."""
        principal = require_principal(request)
        body = validate(ChangePasswordInput, await read_json(request), frozenset())
        user = await self.users.get(principal.user_id)
        if user is None:
            raise Unauthorized("your user no longer exists")
        if not await self.users.password_matches(user, body.currentPassword):
            raise InvalidBodyContent("field 'currentPassword' is not your current password")
        if body.newPassword == body.currentPassword:
            raise InvalidBodyContent("newPassword must differ from currentPassword")
        record = await self.users.set_password(
            principal.user_id, body.newPassword, must_change=False
        )
        return json_response(render_user(record, links_for(request), principal))

    async def get(self, request: Request) -> Response:
        """One user (admins: any; others: themselves)."""
        principal = require_principal(request)
        record = await self._load(request, principal)
        return json_response(render_user(record, links_for(request), principal))

    async def update(self, request: Request) -> Response:
        """Change name/description/enabled/admin/mustChangePassword (admin)."""
        principal = require_admin(request)
        await self._load(request, principal)
        body = validate(UserUpdate, await read_json(request), OUTPUT_ONLY)
        changes = body.model_dump(exclude_none=True)
        if request.path_params["id"] == principal.user_id and (
            changes.get("admin") is False or changes.get("enabled") is False
        ):
            raise InvalidAction("you cannot remove your own admin role or disable yourself")

        def change(data: dict[str, Any]) -> dict[str, Any]:
            data.update(changes)
            return data

        record = await self.users.update(request.path_params["id"], change)
        return json_response(render_user(record, links_for(request), principal))

    async def delete(self, request: Request) -> Response:
        """Delete a user and its tokens (admin; not yourself)."""
        principal = require_admin(request)
        record = await self._load(request, principal)
        if record.id == principal.user_id:
            raise InvalidAction("you cannot delete the user you are logged in as")
        await self.users.delete(record)
        return json_response(render_user(record, links_for(request), principal))

    async def item_action(self, request: Request) -> Response:
        """`?action=setpassword` (admin): set another user's password."""
        action_of(request, ("setpassword",))
        if request.query_params.get("action") != "setpassword":
            raise InvalidAction("POST on a user needs ?action=setpassword")
        principal = require_admin(request)
        await self._load(request, principal)
        body = validate(SetPasswordInput, await read_json(request), frozenset())
        record = await self.users.set_password(
            request.path_params["id"], body.newPassword, must_change=False
        )
        return json_response(render_user(record, links_for(request), principal))
