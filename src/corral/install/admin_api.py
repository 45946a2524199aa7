"""What `corral up` asks a server of the cluster, straight on its HTTP listener (as the ingress
does, with `X-Forwarded-Proto: https` so it answers instead of redirecting): the admin API token
for the kubeconfig, whether a recorded token still works, and which nodes are Ready.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Mapping
from typing import Any

REQUEST_TIMEOUT_S = 10.0
LOGIN_PATH = "/v3-public/localProviders/local?action=login"
SESSION_TTL_MS = 60_000  # the login session only lives to create the API token


class AdminApiError(Exception):
    """The server refused or did not answer; the message says which and why."""


def _request(
    endpoint: str,
    fqdn: str,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    token: str = "",
) -> tuple[int, Any]:
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=REQUEST_TIMEOUT_S)
    headers = {"Host": fqdn, "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
               "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise AdminApiError(f"no answer from the server at {endpoint}: {exc}") from None
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return response.status, parsed


def obtain_token(endpoint: str, fqdn: str, password: str, cluster_name: str) -> str:
    """Log in as admin, create an API token that never expires (RKE's kube-admin), log out."""
    status, answer = _request(endpoint, fqdn, "POST", LOGIN_PATH, {
        "username": "admin", "password": password, "ttl": SESSION_TTL_MS,
        "description": "corral up: creating the kubeconfig token",
    })
    if status != 201 or not isinstance(answer, dict) or "token" not in answer:
        raise AdminApiError(
            f"admin login at {endpoint} answered {status}: the admin password recorded in the "
            "state file is refused (was it changed?)"
        )
    session = str(answer["token"])
    status, created = _request(endpoint, fqdn, "POST", "/v3/tokens", {
        "description": f"kubeconfig of cluster {cluster_name} (corral up)", "ttl": 0,
    }, token=session)
    if status != 201 or not isinstance(created, dict) or "token" not in created:
        raise AdminApiError(f"creating an API token at {endpoint} answered {status}")
    with contextlib.suppress(AdminApiError):  # else it expires within SESSION_TTL_MS
        _request(endpoint, fqdn, "POST", "/v3/tokens?action=logout", {}, token=session)
    return str(created["token"])


def token_works(endpoint: str, fqdn: str, token: str) -> bool:
    """True when the server accepts `token` (AdminApiError when it does not answer)."""
    status, _ = _request(endpoint, fqdn, "GET", "/v3/users?me=true", token=token)
    if status >= 500:
        raise AdminApiError(f"the server at {endpoint} answered {status}")
    return status == 200


def ready_nodes(endpoint: str, fqdn: str, token: str) -> dict[str, bool] | None:
    """Node name → Ready, from the Kubernetes nodes list (None when the server has none)."""
    status, answer = _request(endpoint, fqdn, "GET", "/api/v1/nodes", token=token)
    if status == 404:
        return None
    if status != 200 or not isinstance(answer, dict):
        raise AdminApiError(f"GET /api/v1/nodes at {endpoint} answered {status}")
    result: dict[str, bool] = {}
    for item in answer.get("items") or ():
        name = str((item.get("metadata") or {}).get("name", ""))
        conditions = (item.get("status") or {}).get("conditions") or ()
        result[name] = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
        )
    return result
