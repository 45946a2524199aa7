"""The statuses the proxy answers with itself, and the error that carries one out of a parser
callback (h11's `error_status_hint` habit: the exception knows its wire answer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """An HTTP status the proxy generates, with a detail for logs and the response body."""

    code: int
    reason: str
    detail: str = ""

    def because(self, detail: str) -> ProxyStatus:
        """The same status with a specific detail."""
        return ProxyStatus(self.code, self.reason, detail)


BAD_REQUEST = ProxyStatus(400, "Bad Request")
REQUEST_TIMEOUT = ProxyStatus(408, "Request Timeout")
URI_TOO_LONG = ProxyStatus(414, "URI Too Long")
HEADERS_TOO_LARGE = ProxyStatus(431, "Request Header Fields Too Large")
NOT_IMPLEMENTED = ProxyStatus(501, "Not Implemented")
BAD_GATEWAY = ProxyStatus(502, "Bad Gateway")
GATEWAY_TIMEOUT = ProxyStatus(504, "Gateway Timeout")


class RequestRejected(Exception):
    """Raised inside a request-parser callback: answer `status` and close the connection."""

    def __init__(self, status: ProxyStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
