"""`GET /v3/openapi.json`: an OpenAPI 3.1 description generated from the route table itself
(paths, methods, summaries from handler docstrings, request bodies from the pydantic models
the handlers validate with), so it stays true as routes change."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from corral import __version__
from corral.server.api.http import ApiEndpoint, json_response

OPENAPI_PATH = "/v3/openapi.json"
_PARAM_RE = re.compile(r"{([^}:]+)(:[^}]+)?}")
PUBLIC_OPERATIONS = {
    ("/v3-public/localProviders", "get"),
    ("/v3-public/localProviders/local", "get"),
    ("/v3-public/localProviders/local", "post"),
    (OPENAPI_PATH, "get"),
    ("/v3/settings/{name}", "get"),
}
WEBSOCKET_NOTES = {
    "/v3/subscribe": (
        "WebSocket: resource.change / resource.remove events and a ping every 5 s. Query: "
        "resourceTypes (repeatable), revision (resume after this revision)."
    ),
    "/v3/shell": (
        "WebSocket (admin): a PTY shell on the server host, subprotocol base64.channel.k8s.io; "
        "client frames '0'+base64(stdin), '4'+base64({\"Width\",\"Height\"}); "
        "server frames '1'+base64(stdout), '3'+base64(status)."
    ),
}
ERROR_RESPONSES = {
    "401": {"description": "not logged in", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}},
    "403": {"description": "not allowed", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}},
    "404": {"description": "not found", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}},
    "409": {"description": "changed concurrently; read again", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}},
    "422": {"description": "invalid body or query", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}},
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["type", "status", "code", "message"],
    "properties": {
        "type": {"const": "error"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}


def _summary(handler: Any) -> str:
    doc = (getattr(handler, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name, _ in _PARAM_RE.findall(path)
    ]


def _operation(path: str, method: str, handler: Any,
               bodies: tuple[type[BaseModel], ...], schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": _summary(handler),
        "responses": {"200": {"description": "OK"}, **ERROR_RESPONSES},
    }
    parameters = _parameters(path)
    if parameters:
        operation["parameters"] = parameters
    if bodies:
        refs = []
        for model in bodies:
            schemas[model.__name__] = model.model_json_schema()
            refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
        schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
        operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
    if (path, method) in PUBLIC_OPERATIONS:
        operation["security"] = []
    return operation


def describe(routes: list[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of `routes` (plus this document's own path)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in routes:
        if isinstance(route, Route) and isinstance(route.app, ApiEndpoint):
            endpoint = route.app
            paths[route.path] = {
                method.lower(): _operation(
                    route.path, method.lower(), handler, endpoint.bodies.get(method, ()), schemas
                )
                for method, handler in sorted(endpoint.handlers.items())
            }
        elif isinstance(route, WebSocketRoute):
            paths[route.path] = {"get": {
                "summary": WEBSOCKET_NOTES.get(route.path, "WebSocket"),
                "responses": {"101": {"description": "Switching Protocols"}, **ERROR_RESPONSES},
            }}
    paths[OPENAPI_PATH] = {"get": {
        "summary": "This description.",
        "security": [],
        "responses": {"200": {"description": "OK"}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Corral v3 API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "token-xxxxx:secret"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "user token-xxxxx, password the secret"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "R_SESS"},
            },
        },
        "security": [{"bearer": []}, {"basic": []}, {"cookie": []}],
    }


def openapi_route(routes: list[BaseRoute]) -> Route:
    """The route serving the description of `routes` (computed once)."""
    document = describe(routes)

    async def openapi(request: Request) -> Response:
        """This description."""
        return json_response(document)

    return Route(OPENAPI_PATH, ApiEndpoint({"GET": openapi}), name="openapi")
