"""Request plumbing shared by every v3 endpoint: method dispatch, the error envelope (the
domain's and the store's errors translated by `corral.server.api.errors.to_api_error`), who is
calling, JSON bodies validated by pydantic models, links for this request."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from corral.server.api.envelope import (
    Links,
    base_url,
    collection_body,
    filter_items,
    paginate,
    parse_limit,
)
from corral.server.api.errors import (
    TRANSLATED,
    APIError,
    Forbidden,
    InvalidAction,
    InvalidBodyContent,
    InvalidQuery,
    MethodNotAllowed,
    MissingRequired,
    Unauthorized,
    to_api_error,
)
from corral.server.auth import auth_error_of, principal_of, store_error_of
from corral.server.domain.tokens import Principal

Handler = Callable[[Request], Awaitable[Response]]
ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_BODY_BYTES = 1024 * 1024


class ApiEndpoint:
    """An ASGI endpoint that dispatches on the method (HEAD → GET) and renders APIError, the
    domain's errors and the store's as the error envelope; any other method is a 405 in the
    same envelope."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        bodies: Mapping[str, tuple[type[BaseModel], ...]] | None = None,
    ) -> None:
        self.handlers = dict(handlers)
        # request-body models per method, for the OpenAPI description
        self.bodies = dict(bodies or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        method = "GET" if request.method == "HEAD" else request.method
        handler = self.handlers.get(method)
        try:
            if handler is None:
                allowed = ", ".join(sorted(self.handlers))
                raise MethodNotAllowed(
                    f"{request.method} is not allowed on {request.url.path}; use {allowed}",
                    headers={"Allow": allowed},
                )
            response = await handler(request)
        except TRANSLATED as error:
            response = to_api_error(error).response()
        await response(scope, receive, send)


def links_for(conn: HTTPConnection) -> Links:
    """Links rooted at the URL this client used (forwarded headers honoured)."""
    server = conn.scope.get("server")
    return Links(base_url(conn.url.scheme, conn.headers, tuple(server) if server else None))


def require_principal(conn: HTTPConnection) -> Principal:
    """The logged-in caller, or 401 (naming why presented credentials were refused); 503 when
    the store could not be asked about the presented credentials."""
    failure = store_error_of(conn.scope)
    if failure is not None:
        raise to_api_error(failure)
    principal = principal_of(conn.scope)
    if principal is None:
        reason = auth_error_of(conn.scope)
        raise Unauthorized(
            f"must authenticate: {reason}"
            if reason
            else "must authenticate (Authorization: Bearer token-xxxxx:secret, or log in at "
            "/v3-public/localProviders/local?action=login)"
        )
    return principal


def require_admin(conn: HTTPConnection) -> Principal:
    """The caller if they are an admin; 401 when not logged in, 403 otherwise."""
    principal = require_principal(conn)
    if not principal.admin:
        raise Forbidden(f"{principal.username!r} is not an admin; this needs the admin role")
    return principal


def action_of(request: Request, allowed: tuple[str, ...]) -> str | None:
    """The `?action=` of a POST (None when absent); InvalidAction when not one of `allowed`."""
    action = request.query_params.get("action")
    if action is not None and action not in allowed:
        choices = ", ".join(allowed) if allowed else "none"
        raise InvalidAction(f"unknown action {action!r} on {request.url.path} (actions: {choices})")
    return action


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidBodyContent(f"request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidBodyContent(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidBodyContent("request body must be a JSON object")
    return body


def validate(model: type[ModelT], body: Mapping[str, Any], ignore: frozenset[str]) -> ModelT:
    """`body` as `model` after dropping the output-only fields in `ignore` (so a client can send
    back what it read); unknown fields and bad values are 422 errors naming the field."""
    kept = {k: v for k, v in body.items() if k not in ignore}
    try:
        return model.model_validate(kept)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> APIError:
    problems = []
    missing = False
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "missing":
            missing = True
            problems.append(f"field {field!r} is required")
        elif error["type"] == "extra_forbidden":
            problems.append(f"field {field!r} is not known here; remove it")
        else:
            problems.append(f"field {field!r}: {error['msg']}")
    message = "; ".join(problems)
    return MissingRequired(message) if missing else InvalidBodyContent(message)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A JSON response."""
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def no_content() -> Response:
    """204 with an empty body."""
    return Response(status_code=204)


def collection_response(
    request: Request,
    *,
    resource_type: str,
    collection: str,
    items: list[dict[str, Any]],
    revision: int | None,
    create_allowed: bool,
) -> JSONResponse:
    """The collection envelope of `items` after `?field=value` filters and `?limit`/`?marker`."""
    query = list(request.query_params.multi_items())
    try:
        limit = parse_limit(request.query_params.get("limit"))
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from None
    page = paginate(filter_items(items, query), limit, request.query_params.get("marker"))
    links = links_for(request)
    url = links.collection(collection)
    body = collection_body(
        resource_type=resource_type,
        self_url=url,
        page=page,
        query=query,
        revision=revision,
        create_url=url if create_allowed else None,
    )
    return json_response(body)
