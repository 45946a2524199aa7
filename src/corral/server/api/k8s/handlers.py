"""The HTTP side of the Kubernetes slice: routes, who may call them, errors as `Status`.

Authentication is the server's own (`AuthMiddleware`: `Authorization: Bearer token-xxxxx:secret`,
the v3 API's tokens). As in Kubernetes, `/version` is readable without credentials, discovery
needs a login, and reading nodes needs an admin (others get `403 Forbidden`); credentials that
are presented but refused are `401 Unauthorized` everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from corral.server.api.k8s import discovery, render
from corral.server.api.k8s.negotiate import (
    BadSelector,
    NotAcceptable,
    Representation,
    label_selector,
    name_selector,
    representation,
    table_version,
)
from corral.server.auth import auth_error_of, principal_of, store_error_of
from corral.server.context import ServerContext
from corral.server.domain.clock import now_ms
from corral.server.domain.nodes import NodeRecord, list_nodes
from corral.store.base import StoreError

Access = Literal["public", "login", "admin"]
Handler = Callable[[Request], Awaitable[Response]]
_INCLUDE_OBJECT: dict[str, render.IncludeObject] = {
    "None": "None",
    "Metadata": "Metadata",
    "Object": "Object",
}


class K8sError(Exception):
    """An error answered as a Kubernetes `Status` (code, reason, message, details)."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.body = render.status(code, reason, message, details)
        self.code = code

    def response(self) -> JSONResponse:
        """The Status response."""
        return JSONResponse(self.body, status_code=self.code)


def unauthorized() -> K8sError:
    """What Kubernetes answers for missing or refused credentials."""
    return K8sError(401, "Unauthorized", "Unauthorized")


def check_access(scope: Scope, access: Access, verb: str, resource: str) -> None:
    """Raise the Status for a caller that may not make this request."""
    if store_error_of(scope) is not None:
        raise K8sError(503, "ServiceUnavailable", "the store could not be asked about the token")
    if auth_error_of(scope) is not None:
        raise unauthorized()
    if access == "public":
        return
    principal = principal_of(scope)
    if principal is None:
        raise unauthorized()
    if access == "admin" and not principal.admin:
        raise K8sError(
            403,
            "Forbidden",
            f'{resource} is forbidden: User "{principal.username}" cannot {verb} resource '
            f'"{resource}" in API group "" at the cluster scope',
            {"kind": resource},
        )


class K8sEndpoint:
    """An ASGI endpoint for GET (and HEAD): access check, then the handler; K8sError → Status."""

    def __init__(
        self, handler: Handler, access: Access, verb: str = "get", resource: str = ""
    ) -> None:
        self.handler = handler
        self.access = access
        self.verb = verb
        self.resource = resource

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            check_access(scope, self.access, self.verb, self.resource)  # authn/authz first
            if request.method not in ("GET", "HEAD"):
                raise K8sError(
                    405, "MethodNotAllowed", f"the server does not allow this method on the "
                    f"requested resource ({request.method}: this API is read-only)",
                )  # fmt: skip
            response = await self.handler(request)
        except K8sError as error:
            response = error.response()
        await response(scope, receive, send)


class KubernetesAPI:
    """The read-only slice of the Kubernetes API that `kubectl get nodes` needs."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        """`/version`, `/api`, `/api/v1`, `/apis`, `/api/v1/nodes[/{name}]`; other paths
        under `/api` and `/apis` are `404 NotFound` Status answers."""
        return [
            Route("/version", K8sEndpoint(self.version, "public"), name="k8s-version"),
            Route("/api", K8sEndpoint(self.api, "login"), name="k8s-api"),
            Route("/api/v1", K8sEndpoint(self.core_v1, "login"), name="k8s-api-v1"),
            Route("/apis", K8sEndpoint(self.apis, "login"), name="k8s-apis"),
            Route(
                "/api/v1/nodes",
                K8sEndpoint(self.list_nodes, "admin", "list", "nodes"),
                name="k8s-nodes",
            ),
            Route(
                "/api/v1/nodes/{name}",
                K8sEndpoint(self.get_node, "admin", "get", "nodes"),
                name="k8s-node",
            ),
            Route("/api/{rest:path}", K8sEndpoint(self.not_found, "login"), name="k8s-api-404"),
            Route("/apis/{rest:path}", K8sEndpoint(self.not_found, "login"), name="k8s-apis-404"),
        ]

    async def version(self, request: Request) -> Response:
        """`GET /version`."""
        return JSONResponse(discovery.version_info())

    async def api(self, request: Request) -> Response:
        """`GET /api`."""
        return JSONResponse(discovery.api_versions(request.headers.get("host", "")))

    async def apis(self, request: Request) -> Response:
        """`GET /apis`."""
        return JSONResponse(discovery.api_group_list())

    async def core_v1(self, request: Request) -> Response:
        """`GET /api/v1`."""
        return JSONResponse(discovery.core_v1_resources())

    async def not_found(self, request: Request) -> Response:
        """Anything else under /api or /apis."""
        raise K8sError(404, "NotFound", "the server could not find the requested resource")

    async def _nodes(self) -> tuple[list[NodeRecord], int]:
        try:
            return await list_nodes(self.ctx.store)
        except StoreError as exc:
            raise K8sError(503, "ServiceUnavailable", f"the store does not answer: {exc}") from None

    async def list_nodes(self, request: Request) -> Response:
        """`GET /api/v1/nodes`: a NodeList, or a Table when the client asks for one."""
        query = request.query_params
        if query.get("watch") in ("1", "true"):
            raise K8sError(405, "MethodNotAllowed", "watching nodes is not supported here")
        kind = _representation(request)
        try:
            by_labels = label_selector(query.get("labelSelector"))
            by_name = name_selector(query.get("fieldSelector"))
        except BadSelector as exc:
            raise K8sError(400, "BadRequest", str(exc)) from None
        records, revision = await self._nodes()
        chosen = [r for r in records if by_name(r.name) and by_labels(render.node_labels(r))]
        return self._render(request, kind, chosen, revision, single=False)

    async def get_node(self, request: Request) -> Response:
        """`GET /api/v1/nodes/{name}`: one Node (or a one-row Table)."""
        kind = _representation(request)
        name = request.path_params["name"]
        records, revision = await self._nodes()
        record = next((r for r in records if r.name == name), None)
        if record is None:
            raise K8sError(
                404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"}
            )
        return self._render(request, kind, [record], revision, single=True)

    def _render(
        self,
        request: Request,
        kind: Representation,
        records: list[NodeRecord],
        revision: int,
        *,
        single: bool,
    ) -> Response:
        now = now_ms()
        if kind == "object":
            if single:
                body = render.node_object(records[0], now_ms=now, resource_version=revision)
            else:
                body = render.node_list(records, now_ms=now, revision=revision)
            return JSONResponse(body)
        include = _INCLUDE_OBJECT.get(request.query_params.get("includeObject", "Metadata"))
        if include is None:
            raise K8sError(400, "BadRequest", "includeObject must be None, Metadata or Object")
        table = render.node_table(
            records,
            now_ms=now,
            revision=revision,
            version=table_version(kind),
            include=include,
        )
        return JSONResponse(table)


def _representation(request: Request) -> Representation:
    try:
        return representation(request.headers.get("accept"))
    except NotAcceptable as exc:
        raise K8sError(406, "NotAcceptable", str(exc)) from None
