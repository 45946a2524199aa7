"""`/v3/nodes` (read-only): the nodes of this server's cluster and their health. In an HA
install every node its supervisor registered in the store (corral.server.domain.nodes), with the
heartbeat and the health of its services; a single-node server (no node records) has one node,
the local host, with its names, addresses and a health check of the store, the data directory's
disk and memory (Kubernetes-style conditions)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import platform
import socket
from dataclasses import dataclass
from typing import Any

import psutil
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral import __version__
from corral.server.api.envelope import Links, resource_links
from corral.server.api.errors import NotFound
from corral.server.api.http import (
    ApiEndpoint,
    collection_response,
    json_response,
    links_for,
    require_principal,
)
from corral.server.context import ServerContext
from corral.server.domain.clock import iso_time, now_ms
from corral.server.domain.nodes import NODE_GRACE_PERIOD_S, NodeRecord, list_nodes
from corral.store.base import StoreError

NODES = "nodes"
RESOURCE_TYPE = "node"
STORE_CHECK_TIMEOUT_S = 2.0
DISK_MIN_FREE_FRACTION = 0.10  # kubelet's default nodefs.available<10% eviction threshold
MEMORY_MIN_AVAILABLE_BYTES = 100 * 1024 * 1024  # kubelet's memory.available<100Mi
ROLES = ["etcd", "controlplane", "worker"]


@dataclass(frozen=True, slots=True)
class Check:
    """One health check result."""

    name: str
    ok: bool
    message: str


def disk_check(free: int, total: int) -> Check:
    """The data directory's file system has at least DISK_MIN_FREE_FRACTION free."""
    fraction = free / total if total else 0.0
    ok = fraction >= DISK_MIN_FREE_FRACTION
    return Check("disk", ok, f"{fraction:.0%} of {total // 2**20} MiB free in the data directory")


def memory_check(available: int) -> Check:
    """At least MEMORY_MIN_AVAILABLE_BYTES of memory available."""
    ok = available >= MEMORY_MIN_AVAILABLE_BYTES
    return Check("memory", ok, f"{available // 2**20} MiB available")


def conditions(checks: list[Check]) -> list[dict[str, str]]:
    """Kubernetes-style node conditions from the checks."""
    by_name = {c.name: c for c in checks}
    ready = all(c.ok for c in checks)
    out = [{"type": "Ready", "status": "True" if ready else "False",
            "message": "; ".join(c.message for c in checks if not c.ok) or "all checks pass"}]
    for name, condition in (("disk", "DiskPressure"), ("memory", "MemoryPressure")):
        if name in by_name:
            check = by_name[name]
            out.append({"type": condition, "status": "False" if check.ok else "True",
                        "message": check.message})
    return out


def host_addresses() -> list[str]:
    """The host's IP addresses, global ones first, link-local ones left out."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(addr.address.split("%")[0])
            except ValueError:
                continue
            if not ip.is_link_local and ip not in found:
                found.append(ip)
    found.sort(key=lambda ip: (ip.is_loopback, ip.version, int(ip)))
    return [str(ip) for ip in found]


def local_node_id(hostname: str) -> str:
    """A stable id for the local node."""
    return "m-" + hashlib.sha256(hostname.encode()).hexdigest()[:8]


def record_node(record: NodeRecord, links: Links, now: int) -> dict[str, Any]:
    """A node of an HA install as its supervisor last reported it: a `heartbeat` check (younger
    than the grace period) and one check per service it runs."""
    age_s = max(0.0, (now - record.heartbeat_at_ms) / 1000)
    checks = [Check("heartbeat", age_s < NODE_GRACE_PERIOD_S,
                    f"last heartbeat {age_s:.0f}s ago (grace period {NODE_GRACE_PERIOD_S:.0f}s)")]
    checks += [
        Check(name, health.healthy, health.detail or ("healthy" if health.healthy else "failing"))
        for name, health in sorted(record.services.items())
    ]
    healthy = record.ready(now)
    addresses = list(dict.fromkeys(a for a in (record.address, record.internal_address) if a))
    return {
        "id": record.name,
        "type": RESOURCE_TYPE,
        "hostname": record.hostname or record.name,
        "nodeName": record.name,
        "ipAddress": record.address,
        "internalAddress": record.internal_address,
        "addresses": addresses,
        "roles": list(record.roles),
        "labels": dict(record.labels),
        "state": "active" if healthy else "unavailable",
        "health": {
            "healthy": healthy,
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks],
        },
        "conditions": conditions(checks),
        "heartbeatAt": iso_time(record.heartbeat_at_ms),
        "created": iso_time(record.created_at_ms),
        "info": {"corralVersion": record.version},
        "links": resource_links(links, NODES, record.name, update=False, remove=False),
    }


class NodesAPI:
    """Handlers of the read-only nodes collection."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        """`/v3/nodes` and `/v3/nodes/{id}`."""
        return [
            Route("/v3/nodes", ApiEndpoint({"GET": self.list}), name="nodes"),
            Route("/v3/nodes/{id}", ApiEndpoint({"GET": self.get}), name="node"),
        ]

    async def _checks(self) -> list[Check]:
        try:
            revision = await asyncio.wait_for(self.ctx.store.revision(), STORE_CHECK_TIMEOUT_S)
            store = Check("store", True, f"store answers at revision {revision}")
        except Exception as exc:  # any store failure is an unhealthy node, not a 500
            store = Check("store", False, f"store does not answer: {type(exc).__name__}: {exc}")
        usage = psutil.disk_usage(str(self.ctx.data_dir))
        return [
            store,
            disk_check(usage.free, usage.total),
            memory_check(psutil.virtual_memory().available),
        ]

    async def _local_node(self, links: Links) -> dict[str, Any]:
        hostname = socket.gethostname()
        addresses = host_addresses()
        checks = await self._checks()
        healthy = all(c.ok for c in checks)
        node_id = local_node_id(hostname)
        return {
            "id": node_id,
            "type": RESOURCE_TYPE,
            "hostname": hostname,
            "nodeName": hostname,
            "ipAddress": addresses[0] if addresses else "",
            "addresses": addresses,
            "roles": ROLES,
            "state": "active" if healthy else "unavailable",
            "health": {
                "healthy": healthy,
                "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks],
            },
            "conditions": conditions(checks),
            "info": {
                "os": f"{platform.system()} {platform.release()}",
                "cpus": os.cpu_count() or 0,
                "memoryBytes": psutil.virtual_memory().total,
                "corralVersion": __version__,
                "dataDir": str(self.ctx.data_dir),
            },
            "links": resource_links(links, NODES, node_id, update=False, remove=False),
        }

    async def _nodes(self, links: Links) -> list[dict[str, Any]]:
        """The registered nodes of an HA install; else (none registered, or the store does not
        answer, which the local node's store check then shows) the local host alone."""
        try:
            records, _ = await list_nodes(self.ctx.store)
        except StoreError:
            records = []
        if records:
            now = now_ms()
            return [record_node(record, links, now) for record in records]
        return [await self._local_node(links)]

    async def list(self, request: Request) -> Response:
        """The cluster's nodes (login required)."""
        require_principal(request)
        return collection_response(
            request,
            resource_type=RESOURCE_TYPE,
            collection=NODES,
            items=await self._nodes(links_for(request)),
            revision=None,
            create_allowed=False,
        )

    async def get(self, request: Request) -> Response:
        """One node (login required)."""
        require_principal(request)
        for node in await self._nodes(links_for(request)):
            if node["id"] == request.path_params["id"]:
                return json_response(node)
        raise NotFound(f"node {request.path_params['id']!r} not found")
