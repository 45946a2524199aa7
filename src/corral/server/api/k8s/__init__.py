"""The read-only slice of the Kubernetes API that `kubectl get nodes` needs, served by
`corral server` next to the v3 API: `/version`, discovery (`/api`, `/api/v1`, `/apis`) and
`nodes` (list and get, as JSON or as the Table kubectl prints), from the node records each
node's supervisor writes to the store.

`render` and `negotiate` are pure; `handlers` is the HTTP side; `discovery` the documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from corral.server.context import ServerContext


def k8s_routes(ctx: ServerContext) -> list[BaseRoute]:
    """Every route of the Kubernetes slice."""
    from corral.server.api.k8s.handlers import KubernetesAPI

    return KubernetesAPI(ctx).routes()
