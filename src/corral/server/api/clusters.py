"""`/v3/clusters` and `/v3/clusterregistrationtokens`: admins create, update and delete
clusters; each new cluster gets a registration token whose resource carries the command an
operator runs on a node to register it (Rancher's agent command line)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral import __version__
from corral.server.api.envelope import Links, resource_links
from corral.server.api.errors import InvalidBodyContent, NotFound
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
from corral.server.api.records import Record, Records
from corral.server.api.schemas import ClusterCreate, ClusterUpdate, RegistrationTokenCreate
from corral.server.api.settings import REGISTRY_SETTING, SERVER_URL_SETTING, Settings
from corral.server.auth_secrets import new_id
from corral.server.auth_users import Principal, iso_time, now_ms
from corral.store.base import Store

CLUSTERS = "clusters"
TOKENS = "clusterregistrationtokens"
CLUSTER_TYPE = "cluster"
TOKEN_TYPE = "clusterRegistrationToken"
DEFAULT_TOKEN_NAME = "default-token"
AGENT_IMAGE = "rancher/rancher-agent"
TOKEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TOKEN_LENGTH = 54  # Rancher's registration-token length
CLUSTER_OUTPUT_ONLY = frozenset(
    {"id", "type", "links", "actions", "created", "state", "transitioningMessage"}
)


def new_registration_token() -> str:
    """A fresh registration token (54 characters, ~257 bits)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


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


class Clusters:
    """Clusters and their registration tokens in the store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.clusters = Records(store, CLUSTERS)
        self.tokens = Records(store, TOKENS)
        self.settings = settings

    async def add_token(self, cluster_id: str, name: str | None = None) -> Record:
        """A new registration token for the cluster (`<cluster>:default-token` for the first)."""
        data = {"clusterId": cluster_id, "token": new_registration_token(),
                "created": iso_time(now_ms())}
        if name:
            return await self.tokens.create(f"{cluster_id}:{name}", data)
        return await self.tokens.create_with_new_id(lambda: f"{cluster_id}:{new_id('crt')}", data)

    async def render_token(self, record: Record, links: Links,
                           principal: Principal | None) -> dict[str, Any]:
        """The public form of a registration token with its command lines."""
        server_url = await self.settings.value(SERVER_URL_SETTING) or links.base
        registry = await self.settings.value(REGISTRY_SETTING)
        token = str(record.data.get("token", ""))
        command = agent_command(
            server_url=server_url,
            token=token,
            cacerts_pem=self.settings.ctx.cacerts_pem,
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

    def __init__(self, clusters: Clusters) -> None:
        self.clusters = clusters

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

    async def _cluster(self, cluster_id: str) -> Record:
        record = await self.clusters.clusters.get(cluster_id)
        if record is None:
            raise NotFound(f"cluster {cluster_id!r} not found")
        return record

    async def list(self, request: Request) -> Response:
        """Every cluster (login required)."""
        principal = require_principal(request)
        records, revision = await self.clusters.clusters.list()
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
        data = {**body.model_dump(), "created": iso_time(now_ms())}
        record = await self.clusters.clusters.create_with_new_id(lambda: new_id("c"), data)
        await self.clusters.add_token(record.id, DEFAULT_TOKEN_NAME)
        return json_response(render_cluster(record, links_for(request), principal), 201)

    async def get(self, request: Request) -> Response:
        """One cluster (login required)."""
        principal = require_principal(request)
        record = await self._cluster(request.path_params["id"])
        return json_response(render_cluster(record, links_for(request), principal))

    async def update(self, request: Request) -> Response:
        """Change name, description or labels (admin)."""
        principal = require_admin(request)
        body = validate(ClusterUpdate, await read_json(request), CLUSTER_OUTPUT_ONLY)
        changes = body.model_dump(exclude_none=True)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            data.update(changes)
            return data

        record = await self.clusters.clusters.update(request.path_params["id"], change)
        if record is None:
            raise NotFound(f"cluster {request.path_params['id']!r} not found")
        return json_response(render_cluster(record, links_for(request), principal))

    async def delete(self, request: Request) -> Response:
        """Delete a cluster and its registration tokens (admin)."""
        principal = require_admin(request)
        record = await self._cluster(request.path_params["id"])
        await self.clusters.clusters.delete(record)
        tokens, _ = await self.clusters.tokens.list()
        for token in tokens:
            if token.data.get("clusterId") == record.id:
                await self.clusters.tokens.delete_id(token.id)
        return json_response(render_cluster(record, links_for(request), principal))

    async def list_tokens(self, request: Request) -> Response:
        """Registration tokens (admin); filter with `?clusterId=`."""
        principal = require_admin(request)
        records, revision = await self.clusters.tokens.list()
        links = links_for(request)
        items = [await self.clusters.render_token(r, links, principal) for r in records]
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
        if await self.clusters.clusters.get(body.clusterId) is None:
            raise InvalidBodyContent(f"field 'clusterId': cluster {body.clusterId!r} not found")
        record = await self.clusters.add_token(body.clusterId)
        rendered = await self.clusters.render_token(record, links_for(request), principal)
        return json_response(rendered, 201)

    async def _token(self, request: Request) -> Record:
        record = await self.clusters.tokens.get(request.path_params["id"])
        if record is None:
            raise NotFound(f"cluster registration token {request.path_params['id']!r} not found")
        return record

    async def get_token(self, request: Request) -> Response:
        """One registration token (admin)."""
        principal = require_admin(request)
        record = await self._token(request)
        rendered = await self.clusters.render_token(record, links_for(request), principal)
        return json_response(rendered)

    async def delete_token(self, request: Request) -> Response:
        """Revoke a registration token (admin)."""
        principal = require_admin(request)
        record = await self._token(request)
        await self.clusters.tokens.delete(record)
        rendered = await self.clusters.render_token(record, links_for(request), principal)
        return json_response(rendered)
