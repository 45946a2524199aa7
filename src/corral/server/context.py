"""What every part of the management server shares: store, settings, audit log, certificates.

Owned by the server-core work; the API work may add fields (with defaults) at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.store.base import Store


@dataclass
class ServerContext:
    """Built once at start-up by `corral server` and handed to the ASGI app."""

    store: Store
    data_dir: Path
    # PEM of the CA clients should trust; "" with --no-cacerts or a recognised-CA certificate.
    cacerts_pem: str = ""
    # The URL operators reach the server by (setting `server-url`), "" until set.
    server_url: str = ""
    # corral.server.audit.AuditLog when AUDIT_LEVEL > 0, else None.
    audit: Any = None
    # corral.server.certs.ServingCertificates behind the HTTPS listener (None in unit tests).
    certificates: Any = None
    # Free-form extras parts may hang here.
    extras: dict[str, Any] = field(default_factory=dict)
