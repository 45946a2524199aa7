"""The route table of the v3 API, and which store collections feed `/v3/subscribe`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.server.api.clusters import (
    CLUSTER_TYPE,
    TOKEN_TYPE,
    ClustersAPI,
    RegistrationTokenView,
    render_cluster,
)
from corral.server.api.envelope import Links
from corral.server.api.errors import NotFound
from corral.server.api.http import ApiEndpoint, json_response, links_for
from corral.server.api.k8s import k8s_routes
from corral.server.api.login import LoginAPI
from corral.server.api.nodes import NODES, NodesAPI, record_node
from corral.server.api.nodes import RESOURCE_TYPE as NODE_TYPE
from corral.server.api.openapi import openapi_route
from corral.server.api.settings import RESOURCE_TYPE as SETTING_TYPE
from corral.server.api.settings import SettingsAPI, render_setting
from corral.server.api.tokens import TokensAPI, render_token, token_visible
from corral.server.api.users import UsersAPI, render_user, user_visible
from corral.server.context import ServerContext
from corral.server.domain.clock import now_ms
from corral.server.domain.nodes import NodeRecord
from corral.server.domain.records import (
    CLUSTERS,
    REGISTRATION_TOKENS,
    SETTINGS,
    TOKENS,
    USERS,
    Record,
)
from corral.server.domain.settings import DEFINITIONS, Settings
from corral.server.domain.tokens import Principal
from corral.server.events import EventKind, SubscribeAPI
from corral.server.shell import ShellAPI

# collections listed by GET /v3, in the order shown
ROOT_COLLECTIONS = (
    "users", "tokens", "settings", "clusters", "clusterregistrationtokens", "nodes",
)


def event_kinds(settings: Settings, view: RegistrationTokenView) -> dict[str, EventKind]:
    """Store collection → how its changes appear on /v3/subscribe."""

    def sync(render: Any) -> Any:
        async def rendered(record: Record, links: Links, principal: Principal) -> Any:
            return render(record, links, principal)

        return rendered

    async def rendered_setting(record: Record, links: Links, principal: Principal) -> Any:
        return render_setting(settings, record.id, record, links, principal)

    async def rendered_node(record: Record, links: Links, principal: Principal) -> Any:
        return record_node(NodeRecord.from_data(record.data), links, now_ms())

    def everyone(principal: Principal, record: Record) -> bool:
        return True

    def admins(principal: Principal, record: Record) -> bool:
        return principal.admin

    def known_setting(principal: Principal, record: Record) -> bool:
        return record.id in DEFINITIONS and DEFINITIONS[record.id].writable

    return {
        USERS: EventKind(USERS, "user", sync(render_user), user_visible),
        TOKENS: EventKind(TOKENS, "token", sync(render_token), token_visible),
        SETTINGS: EventKind(SETTINGS, SETTING_TYPE, rendered_setting, known_setting),
        CLUSTERS: EventKind(CLUSTERS, CLUSTER_TYPE, sync(render_cluster), everyone),
        NODES: EventKind(NODES, NODE_TYPE, rendered_node, everyone),
        REGISTRATION_TOKENS: EventKind(
            REGISTRATION_TOKENS, TOKEN_TYPE, view.render, admins
        ),
    }


async def api_root(request: Request) -> Response:
    """`GET /v3`: links to every collection."""
    links = links_for(request)
    body = {
        "id": "v3",
        "type": "apiRoot",
        "links": {
            "self": f"{links.base}/v3",
            **{name: links.collection(name) for name in ROOT_COLLECTIONS},
            "subscribe": f"{links.base}/v3/subscribe".replace("http", "ws", 1),
            "shell": f"{links.base}/v3/shell".replace("http", "ws", 1),
            "openapi": f"{links.base}/v3/openapi.json",
        },
    }
    return json_response(body)


async def not_found(request: Request) -> Response:
    """Anything else under /v3 or /v3-public."""
    raise NotFound(f"no such API path {request.url.path}")


def api_routes(ctx: ServerContext) -> list[BaseRoute]:
    """All API routes wired to the context's domain services."""
    view = RegistrationTokenView(ctx.settings)
    kinds = event_kinds(ctx.settings, view)
    routes: list[BaseRoute] = [
        Route("/v3", ApiEndpoint({"GET": api_root}), name="v3"),
        *UsersAPI(ctx.users).routes(),
        *TokensAPI(ctx.tokens).routes(),
        *SettingsAPI(ctx.settings).routes(),
        *ClustersAPI(ctx.clusters, view).routes(),
        *NodesAPI(ctx).routes(),
        *LoginAPI(ctx.users, ctx.tokens, ctx.settings).routes(),
        *SubscribeAPI(ctx.store, ctx.tokens, kinds).routes(),
        *ShellAPI(ctx).routes(),
    ]
    routes.append(openapi_route(list(routes)))
    routes += k8s_routes(ctx)  # the Kubernetes slice kubectl reads (not in the v3 OpenAPI)
    any_method = {m: not_found for m in ("GET", "POST", "PUT", "DELETE", "PATCH")}
    routes += [
        Route("/v3/{rest:path}", ApiEndpoint(any_method), name="v3-not-found"),
        Route("/v3-public/{rest:path}", ApiEndpoint(any_method), name="v3-public-not-found"),
    ]
    return routes
