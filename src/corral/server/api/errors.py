"""API errors that carry their wire answer (status + code), rendered as the error envelope."""

from __future__ import annotations

from starlette.responses import JSONResponse

from corral.server.api.envelope import error_body


class APIError(Exception):
    """An error the client sees as `{"type":"error","status":…,"code":…,"message":…}`."""

    status = 500
    code = "ServerError"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response for this error."""
        return JSONResponse(
            error_body(self.status, self.code, self.message),
            status_code=self.status,
            headers=self.headers,
        )


class BadRequest(APIError):
    """The request cannot be served as sent (e.g. a WebSocket without the needed subprotocol)."""

    status = 400
    code = "BadRequest"


class Unauthorized(APIError):
    """No valid credentials (missing, wrong, expired or deleted token)."""

    status = 401
    code = "Unauthorized"


class Forbidden(APIError):
    """Authenticated, but not allowed (e.g. not an admin)."""

    status = 403
    code = "Forbidden"


class NotFound(APIError):
    """No such resource or route."""

    status = 404
    code = "NotFound"


class MethodNotAllowed(APIError):
    """The route exists but not for this method."""

    status = 405
    code = "MethodNotAllowed"


class Conflict(APIError):
    """The resource changed (or appeared) between read and write: re-read and retry."""

    status = 409
    code = "Conflict"


class InvalidBodyContent(APIError):
    """The body is not valid JSON or a field has the wrong shape."""

    status = 422
    code = "InvalidBodyContent"


class MissingRequired(APIError):
    """A required field is absent."""

    status = 422
    code = "MissingRequired"


class InvalidAction(APIError):
    """The `?action=` is unknown here or not possible in the resource's state."""

    status = 422
    code = "InvalidAction"


class InvalidQuery(APIError):
    """A query parameter has a bad value."""

    status = 422
    code = "InvalidFormat"
