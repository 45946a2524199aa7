"""`/v3/settings`: named string values (corral.server.domain.settings). `cacerts` is read-only
(the CA clients should trust, from the server's certificates) and, with a few other public ones,
readable without login; admins update the writable ones; unknown names are 404."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.server.api.envelope import Links, resource_links
from corral.server.api.http import (
    ApiEndpoint,
    collection_response,
    json_response,
    links_for,
    read_json,
    require_admin,
    require_principal,
    validate,
)
from corral.server.api.schemas import SettingUpdate
from corral.server.auth import principal_of
from corral.server.domain.records import SETTINGS, Record
from corral.server.domain.settings import (
    DEFINITIONS,
    Settings,
    definition_of,
    writable_definition,
)
from corral.server.domain.tokens import Principal

RESOURCE_TYPE = "setting"
OUTPUT_ONLY = frozenset(
    {"id", "type", "links", "actions", "name", "default", "customized", "source", "readOnly"}
)


def render_setting(settings: Settings, name: str, record: Record | None, links: Links,
                   principal: Principal | None) -> dict[str, Any]:
    """The public form of a setting (`record`: its stored override, if any)."""
    definition = DEFINITIONS[name]
    default = settings.default(name)
    stored = record is not None and definition.writable
    value = str(record.data.get("value", "")) if record is not None and stored else default
    can_update = definition.writable and bool(principal and principal.admin)
    return {
        "id": name,
        "type": RESOURCE_TYPE,
        "name": name,
        "value": value,
        "default": default,
        "customized": stored,
        "source": "db" if stored else "default",
        "readOnly": not definition.writable,
        "links": resource_links(links, SETTINGS, name, update=can_update, remove=False),
    }


class SettingsAPI:
    """Handlers of the settings collection and its items."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def routes(self) -> list[BaseRoute]:
        """`/v3/settings` and `/v3/settings/{name}`."""
        return [
            Route("/v3/settings", ApiEndpoint({"GET": self.list}), name="settings"),
            Route(
                "/v3/settings/{name}",
                ApiEndpoint({"GET": self.get, "PUT": self.update},
                            bodies={"PUT": (SettingUpdate,)}),
                name="setting",
            ),
        ]

    async def list(self, request: Request) -> Response:
        """Every known setting (login required)."""
        principal = require_principal(request)
        stored, revision = await self.settings.stored_all()
        links = links_for(request)
        items = [render_setting(self.settings, n, stored.get(n), links, principal)
                 for n in DEFINITIONS]
        return collection_response(
            request,
            resource_type=RESOURCE_TYPE,
            collection=SETTINGS,
            items=items,
            revision=revision,
            create_allowed=False,
        )

    async def get(self, request: Request) -> Response:
        """One setting; public ones (such as `cacerts`) need no login."""
        definition = definition_of(request.path_params["name"])
        principal = principal_of(request.scope)
        if not definition.public:
            principal = require_principal(request)
        record = await self.settings.stored(definition.name)
        rendered = render_setting(self.settings, definition.name, record, links_for(request),
                                  principal)
        return json_response(rendered)

    async def update(self, request: Request) -> Response:
        """Set a writable setting (admin)."""
        principal = require_admin(request)
        definition = writable_definition(request.path_params["name"])
        body = validate(SettingUpdate, await read_json(request), OUTPUT_ONLY)
        record = await self.settings.set(definition.name, body.value)
        rendered = render_setting(self.settings, definition.name, record, links_for(request),
                                  principal)
        return json_response(rendered)
