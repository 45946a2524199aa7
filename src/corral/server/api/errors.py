"""API errors that carry their wire answer (status + code), rendered as the error envelope,
and `to_api_error`: the one place where the domain's and the store's errors become wire answers
(a store that cannot be reached is a 503 naming it, never a 500 traceback)."""

from __future__ import annotations

from starlette.responses import JSONResponse

from corral.server.api.envelope import error_body
from corral.server.domain import errors as domain
from corral.store import StoreClosed
from corral.store.base import CompareFailed, StoreError

#: Seconds a client should wait before retrying after a 503 (the `Retry-After` header).
RETRY_AFTER_SECONDS = 1


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


class ServiceUnavailable(APIError):
    """The store cannot be reached (or the server is stopping): nothing was done; try again."""

    status = 503
    code = "ServiceUnavailable"


#: What `to_api_error` translates; anything else is a bug and stays a 500.
TRANSLATED = (APIError, domain.DomainError, StoreError)

_DOMAIN_ANSWERS: tuple[tuple[type[domain.DomainError], type[APIError]], ...] = (
    (domain.NotFound, NotFound),
    (domain.AlreadyExists, Conflict),
    (domain.ChangedConcurrently, Conflict),
    (domain.Invalid, InvalidBodyContent),
    (domain.ReadOnly, Forbidden),
)


def store_unavailable_message(error: StoreError) -> str:
    """`the store (…) is unavailable: …; try again` from the store's own message."""
    message = str(error).strip() or type(error).__name__
    if not message.startswith("the store"):
        message = f"the store is unavailable: {message}"
    return message if "try again" in message else f"{message}; try again"


def to_api_error(error: Exception) -> APIError:
    """The wire answer of an error from a handler: APIErrors as they are, the domain's errors
    by class, the store's as 503 (a lost compare that escaped the domain as 409)."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, domain.DomainError):
        for domain_class, api_class in _DOMAIN_ANSWERS:
            if isinstance(error, domain_class):
                return api_class(error.message)
        return InvalidBodyContent(error.message)
    if isinstance(error, CompareFailed):
        return Conflict(f"the resource changed while it was written ({error}); read it again "
                        "and retry")
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, StoreClosed):
        return ServiceUnavailable("the store is closed (the server is stopping); try again",
                                  headers=retry)
    if isinstance(error, StoreError):  # StoreUnavailable, LeaseNotFound, …
        return ServiceUnavailable(store_unavailable_message(error), headers=retry)
    raise TypeError(f"no wire answer for {type(error).__name__}") from error
