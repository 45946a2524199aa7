"""`/v3/clusters` and `/v3/clusterregistrationtokens`: admins create, update and delete
clusters (corral.server.domain.clusters); each new cluster gets a registration token whose
resource carries the command an operator runs on a node to register it (Rancher's agent command
line)."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral import __version__
from corral.server.api.envelope import Links, resource_links
from corral.server.api.http import (
    ApiEndpoint,
    collection_response,
    json_response,
    links_for,
    read_json,
    require_admin,
    require_principal,
    validate,
)
from corral.server.api.schemas import ClusterCreate, ClusterUpdate, RegistrationTokenCreate
from corral.server.domain.clusters import Clusters
from corral.server.domain.records import CLUSTERS, REGISTRATION_TOKENS, Record
from corral.server.domain.settings import REGISTRY_SETTING, Settings
from corral.server.domain.tokens import Principal

TOKENS = REGISTRATION_TOKENS
CLUSTER_TYPE = "cluster"
TOKEN_TYPE = "clusterRegistrationToken"
AGENT_IMAGE = "rancher/rancher-agent"
CLUSTER_OUTPUT_ONLY = frozenset(
    {"id", "type", "links", "actions", "created", "state", "transitioningMessage"}
)


def agent_command(*, server_url: str, token: str, cacerts_pem: str, registry: str) -> str:
    """The `docker run` line that starts an agent registering with this server; the image is
    prefixed with `system-default-registry` (air-gapped installs), and `--ca-checksum` pins
    the CA when the server publishes one."""
    image = f"{registry.rstrip('/')}/{AGENT_IMAGE}" if registry else AGENT_IMAGE
    parts = [
        "sudo docker run -d --privileged --restart=unless-stopped --net=host",
        "-v /etc/kubernetes:/etc/kubernetes -v /var/run:/var/run",
        f"{image}:v{__version__}",
        f"--server {server_url}",
        f"--token {token}",
    ]
    if cacerts_pem.strip():
        parts.append(f"--ca-checksum {hashlib.sha256(cacerts_pem.encode()).hexdigest()}")
    return " ".join(parts)


def render_cluster(record: Record, links: Links, principal: Principal | None) -> dict[str, Any]:
    """The public form of a cluster."""
    data = record.data
    admin = bool(principal and principal.admin)
    out = resource_links(links, CLUSTERS, record.id, update=admin, remove=admin)
    out["clusterRegistrationTokens"] = f"{links.collection(TOKENS)}?clusterId={record.id}"
    return {
        "id": record.id,
        "type": CLUSTER_TYPE,
        "name": data.get("name", ""),
        "description": data.get("description", ""),
        "labels": data.get("labels", {}),
        "created": data.get("created", ""),
        "state": "pending",
        "transitioningMessage": "waiting for a node to register with the registration token",
        "links": out,
    }


class RegistrationTokenView:
    """Renders registration tokens with the command lines, from the followed settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def render(self, record: Record, links: Links,
                     principal: Principal | None) -> dict[str, Any]:
        """The public form of a registration token with its command lines."""
        server_url = await self.settings.server_url() or links.base
        registry = await self.settings.value(REGISTRY_SETTING)
        token = str(record.data.get("token", ""))
        command = agent_command(
            server_url=server_url,
            token=token,
            cacerts_pem=self.settings.defaults.cacerts_pem,
            registry=registry,
        )
        admin = bool(principal and principal.admin)
        return {
            "id": record.id,
            "type": TOKEN_TYPE,
            "name": record.id.partition(":")[2],
            "clusterId": record.data.get("clusterId", ""),
            "token": token,
            "command": command,
            "nodeCommand": f"{command} --etcd --controlplane --worker",
            "created": record.data.get("created", ""),
            "links": resource_links(links, TOKENS, record.id, update=False, remove=admin),
        }


class ClustersAPI:
    """Handlers of clusters and registration tokens."""

    def __init__(self, clusters: Clusters, view: RegistrationTokenView) -> None:
        self.clusters = clusters
        self.view = view

    def routes(self) -> list[BaseRoute]:
        """`/v3/clusters[/{id}]` and `/v3/clusterregistrationtokens[/{id}]`."""
        return [
            Route(
                "/v3/clusters",
                ApiEndpoint({"GET": self.list, "POST": self.create},
                            bodies={"POST": (ClusterCreate,)}),
                name="clusters",
            ),
            Route(
                "/v3/clusters/{id}",
                ApiEndpoint({"GET": self.get, "PUT": self.update, "DELETE": self.delete},
                            bodies={"PUT": (ClusterUpdate,)}),
                name="cluster",
            ),
            Route(
                "/v3/clusterregistrationtokens",
                ApiEndpoint({"GET": self.list_tokens, "POST": self.create_token},
                            bodies={"POST": (RegistrationTokenCreate,)}),
                name="clusterregistrationtokens",
            ),
            Route(
                "/v3/clusterregistrationtokens/{id}",
                ApiEndpoint({"GET": self.get_token, "DELETE": self.delete_token}),
                name="clusterregistrationtoken",
            ),
        ]

    async def list(self, request: Request) -> Response:
        """Every cluster (login required)."""
        principal = require_principal(request)
        records, revision = await self.clusters.list_clusters()
        links = links_for(request)
        return collection_response(
            request,
            resource_type=CLUSTER_TYPE,
            collection=CLUSTERS,
            items=[render_cluster(r, links, principal) for r in records],
            revision=revision,
            create_allowed=principal.admin,
        )

    async def create(self, request: Request) -> Response:
        """Create a cluster and its default registration token (admin)."""
        principal = require_admin(request)
        body = validate(ClusterCreate, await read_json(request), CLUSTER_OUTPUT_ONLY)
        record = await self.clusters.create(body.model_dump())
        return json_response(render_cluster(record, links_for(request), principal), 201)

    async def get(self, request: Request) -> Response:
        """One cluster (login required)."""
        principal = require_principal(request)
        record = await self.clusters.require(request.path_params["id"])
        return json_response(render_cluster(record, links_for(request), principal))

    async def update(self, request: Request) -> Response:
        """Change name, description or labels (admin)."""
        principal = require_admin(request)
        body = validate(ClusterUpdate, await read_json(request), CLUSTER_OUTPUT_ONLY)
        changes = body.model_dump(exclude_none=True)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            data.update(changes)
            return data

        record = await self.clusters.update(request.path_params["id"], change)
        return json_response(render_cluster(record, links_for(request), principal))

    async def delete(self, request: Request) -> Response:
        """Delete a cluster and its registration tokens (admin)."""
        principal = require_admin(request)
        record = await self.clusters.require(request.path_params["id"])
        await self.clusters.delete(record)
        return json_response(render_cluster(record, links_for(request), principal))

    async def list_tokens(self, request: Request) -> Response:
        """Registration tokens (admin); filter with `?clusterId=`."""
        principal = require_admin(request)
        records, revision = await self.clusters.list_tokens()
        links = links_for(request)
        items = [await self.view.render(r, links, principal) for r in records]
        return collection_response(
            request,
            resource_type=TOKEN_TYPE,
            collection=TOKENS,
            items=items,
            revision=revision,
            create_allowed=True,
        )

    async def create_token(self, request: Request) -> Response:
        """An extra registration token for an existing cluster (admin)."""
        principal = require_admin(request)
        body = validate(RegistrationTokenCreate, await read_json(request), frozenset())
        record = await self.clusters.add_token(body.clusterId)
        rendered = await self.view.render(record, links_for(request), principal)
        return json_response(rendered, 201)

    async def get_token(self, request: Request) -> Response:
        """One registration token (admin)."""
        principal = require_admin(request)
        record = await self.clusters.require_token(request.path_params["id"])
        rendered = await self.view.render(record, links_for(request), principal)
        return json_response(rendered)

    async def delete_token(self, request: Request) -> Response:
        """Revoke a registration token (admin)."""
        principal = require_admin(request)
        record = await self.clusters.require_token(request.path_params["id"])
        await self.clusters.delete_token(record)
        rendered = await self.view.render(record, links_for(request), principal)
        return json_response(rendered)
