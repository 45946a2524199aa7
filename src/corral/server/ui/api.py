"""The JSON answers only the UI needs, next to the v3 API and answered like it:

* `GET /v3/ui/info` (login): the URL operators reach the server by (`server-url`, or the URL
  this request came to when it is not set), the CA clients should trust (its SHA-256
  fingerprint, and the checksum an agent's `--ca-checksum` pins), whether the API audit log is
  on, the version and the logged-in user's role.
* `GET /v3/ui/audit` (admin): the last records of the API audit log, newest first
  (corral.server.ui.audit_view); `?user=&method=&status=&limit=`. 404 when the log is off.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral import __version__
from corral.pki import PkiError, fingerprint_sha256, parse_certificates
from corral.server.api.errors import InvalidQuery, NotFound
from corral.server.api.http import (
    ApiEndpoint,
    json_response,
    links_for,
    require_admin,
    require_principal,
)
from corral.server.context import ServerContext
from corral.server.domain.settings import CACERTS_SETTING
from corral.server.ui.audit_view import parse_filter, recent_records


def ca_facts(pem: str) -> dict[str, str]:
    """Fingerprint (first certificate, `AB:CD:…`) and agent checksum (sha256 hex of the PEM
    text) of the published CA; empty strings when none is published."""
    if not pem.strip():
        return {"fingerprint": "", "checksum": ""}
    try:
        first = parse_certificates(pem, "the cacerts setting")[0]
    except PkiError:
        fingerprint = ""
    else:
        fingerprint = fingerprint_sha256(first)
    return {"fingerprint": fingerprint, "checksum": hashlib.sha256(pem.encode()).hexdigest()}


class UiAPI:
    """Handlers of `/v3/ui/info` and `/v3/ui/audit`."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        """`/v3/ui/info` and `/v3/ui/audit`."""
        return [
            Route("/v3/ui/info", ApiEndpoint({"GET": self.info}), name="ui-info"),
            Route("/v3/ui/audit", ApiEndpoint({"GET": self.audit}), name="ui-audit"),
        ]

    async def info(self, request: Request) -> Response:
        """What the dashboard shows about the server itself."""
        principal = require_principal(request)
        pem = await self.ctx.settings.value(CACERTS_SETTING)
        audit = self.ctx.audit
        body: dict[str, Any] = {
            "type": "uiInfo",
            "serverUrl": self.ctx.server_url,
            "requestUrl": links_for(request).base,
            "cacerts": bool(pem.strip()),
            "ca": ca_facts(pem),
            "audit": {
                "enabled": bool(audit is not None and audit.settings.enabled),
                "level": audit.settings.level if audit is not None else 0,
            },
            "version": f"v{__version__}",
            "user": {"id": principal.user_id, "username": principal.username,
                     "admin": principal.admin},
        }
        return json_response(body)

    async def audit(self, request: Request) -> Response:
        """The last audit records that pass the filters (admin)."""
        require_admin(request)
        audit = self.ctx.audit
        if audit is None or not audit.settings.enabled:
            raise NotFound("the API audit log is off: start corral server with AUDIT_LEVEL=1, "
                           "2 or 3 to record API requests and see them here")
        wanted = parse_filter(dict(request.query_params))
        if isinstance(wanted, str):
            raise InvalidQuery(wanted)
        records = await asyncio.to_thread(recent_records, audit.path, wanted)
        return json_response({
            "type": "collection",
            "resourceType": "auditRecord",
            "level": audit.settings.level,
            "file": str(audit.path),
            "filters": {"user": wanted.user, "method": wanted.method, "status": wanted.status,
                        "limit": wanted.limit},
            "data": records,
        })
