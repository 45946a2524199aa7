"""`/v3/settings`: named string values. `cacerts` is read-only (the CA clients should trust, from
the server's certificates) and, with a few other public ones, readable without login; admins
update the writable ones; unknown names are 404."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral import __version__
from corral.server.api.envelope import Links, resource_links
from corral.server.api.errors import Forbidden, InvalidBodyContent, NotFound
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
from corral.server.api.records import Record, Records
from corral.server.api.schemas import SettingUpdate
from corral.server.auth import principal_of
from corral.server.auth_users import Principal
from corral.server.context import ServerContext
from corral.store.base import Store

SETTINGS = "settings"
RESOURCE_TYPE = "setting"
OUTPUT_ONLY = frozenset(
    {"id", "type", "links", "actions", "name", "default", "customized", "source", "readOnly"}
)
SESSION_TTL_SETTING = "auth-user-session-ttl-minutes"
SERVER_URL_SETTING = "server-url"
REGISTRY_SETTING = "system-default-registry"
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._\-/]+)?$")


def check_server_url(value: str) -> str | None:
    """Problem with a `server-url` value, or None: an absolute https URL with no path."""
    if value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https URL such as https://rancher.example.com"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return "must be just https://host[:port], without path, query or credentials"
    return None


def check_registry(value: str) -> str | None:
    """Problem with a `system-default-registry` value (`host[:port][/path]`, no scheme)."""
    if value == "" or _REGISTRY_RE.match(value):
        return None
    return "must be a registry like registry.example.com:5000 (no scheme, no trailing slash)"


def check_minutes(value: str) -> str | None:
    """Problem with a whole number of minutes (>= 1)."""
    return None if value.isdigit() and int(value) >= 1 else "must be a whole number >= 1"


def check_telemetry(value: str) -> str | None:
    """Problem with a `telemetry-opt` value."""
    return None if value in ("in", "out", "prompt") else "must be one of: in, out, prompt"


@dataclass(frozen=True, slots=True)
class SettingDefinition:
    """A known setting: its default (possibly from the server context), whether admins may
    change it, whether it is readable without login, and how its values are checked."""

    name: str
    default: Callable[[ServerContext], str]
    writable: bool = True
    public: bool = False
    check: Callable[[str], str | None] | None = None


DEFINITIONS: dict[str, SettingDefinition] = {
    d.name: d
    for d in (
        SettingDefinition("cacerts", lambda ctx: ctx.cacerts_pem, writable=False, public=True),
        SettingDefinition(SERVER_URL_SETTING, lambda ctx: ctx.server_url, check=check_server_url),
        SettingDefinition(REGISTRY_SETTING, lambda ctx: "", check=check_registry),
        SettingDefinition(SESSION_TTL_SETTING, lambda ctx: "960", check=check_minutes),
        SettingDefinition("server-version", lambda ctx: f"v{__version__}", writable=False,
                          public=True),
        SettingDefinition("ui-pl", lambda ctx: "Corral", public=True),
        SettingDefinition("telemetry-opt", lambda ctx: "prompt", check=check_telemetry),
    )
}


class Settings:
    """Effective setting values: the stored override, else the definition's default."""

    def __init__(self, ctx: ServerContext, store: Store) -> None:
        self.ctx = ctx
        self.records = Records(store, SETTINGS)

    async def value(self, name: str) -> str:
        """The effective value of a known setting."""
        definition = DEFINITIONS[name]
        if definition.writable:
            record = await self.records.get(name)
            if record is not None:
                return str(record.data.get("value", ""))
        return definition.default(self.ctx)

    def render(self, name: str, record: Record | None, links: Links,
               principal: Principal | None) -> dict[str, Any]:
        """The public form of a setting."""
        definition = DEFINITIONS[name]
        default = definition.default(self.ctx)
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

    def _definition(self, request: Request) -> SettingDefinition:
        name = request.path_params["name"]
        definition = DEFINITIONS.get(name)
        if definition is None:
            raise NotFound(f"setting {name!r} not found (known: {', '.join(sorted(DEFINITIONS))})")
        return definition

    async def list(self, request: Request) -> Response:
        """Every known setting (login required)."""
        principal = require_principal(request)
        records, revision = await self.settings.records.list()
        stored = {r.id: r for r in records}
        links = links_for(request)
        items = [self.settings.render(n, stored.get(n), links, principal) for n in DEFINITIONS]
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
        definition = self._definition(request)
        principal = principal_of(request.scope)
        if not definition.public:
            principal = require_principal(request)
        record = await self.settings.records.get(definition.name) if definition.writable else None
        return json_response(
            self.settings.render(definition.name, record, links_for(request), principal)
        )

    async def update(self, request: Request) -> Response:
        """Set a writable setting (admin)."""
        principal = require_admin(request)
        definition = self._definition(request)
        if not definition.writable:
            raise Forbidden(f"setting {definition.name!r} is read-only")
        body = validate(SettingUpdate, await read_json(request), OUTPUT_ONLY)
        problem = definition.check(body.value) if definition.check else None
        if problem:
            raise InvalidBodyContent(f"field 'value' of setting {definition.name!r} {problem}")
        record = await self.settings.records.get(definition.name)
        if record is None:
            record = await self.settings.records.create(definition.name, {"value": body.value})
        else:
            record = await self.settings.records.replace(record, {"value": body.value})
        if definition.name == SERVER_URL_SETTING:
            self.settings.ctx.server_url = body.value
        return json_response(
            self.settings.render(definition.name, record, links_for(request), principal)
        )
