"""The v3 API: users, tokens, settings, clusters, nodes, login, events, shell, OpenAPI.

`build_routes(ctx)` is what the app composes; the modules are imported when it is called (the
auth layer imports parts of this package, so importing them here would be circular).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from corral.server.context import ServerContext


def build_routes(ctx: ServerContext) -> list[BaseRoute]:
    """Every route of the API: /v3, /v3-public, /v3/subscribe, /v3/shell, /v3/openapi.json."""
    from corral.server.api.routes import api_routes

    return api_routes(ctx)
