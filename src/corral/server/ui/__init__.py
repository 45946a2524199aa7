"""The web UI at `/`: one HTML page, plain ES modules and the vendored front-end packages in
`static/`, served by `corral.server.ui.pages`; the few JSON answers only the UI needs (server
facts, the audit log's last records) in `corral.server.ui.api`."""

from __future__ import annotations

from starlette.routing import BaseRoute

from corral.server.context import ServerContext
from corral.server.ui.api import UiAPI
from corral.server.ui.pages import page_routes


def ui_routes(ctx: ServerContext) -> list[BaseRoute]:
    """The UI's pages, its static files and its JSON endpoints (mount before the v3 API's
    catch-all routes)."""
    return [*UiAPI(ctx).routes(), *page_routes()]


__all__ = ["ui_routes"]
