"""The nodes of an HA install (the hosts of RKE's cluster.yml) as the store holds them.

Each node's supervisor (started by `corral up`) writes `/corral/nodes/<name>` when it starts
and then every HEARTBEAT_INTERVAL_S with the health of its services; the servers read these
records for `/v3/nodes` and the Kubernetes `nodes` list. A node is Ready while its last
heartbeat is younger than NODE_GRACE_PERIOD_S (kube-controller-manager's
`--node-monitor-grace-period`, 40 s) and every service it reported is healthy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.store.base import KeyValue, Store

NODES_PREFIX = "/corral/nodes/"
HEARTBEAT_INTERVAL_S = 10.0
NODE_GRACE_PERIOD_S = 40.0
ROLES = ("controlplane", "etcd", "worker")


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One service of a node (`etcd`, `server`, `ingress`) as its supervisor last saw it."""

    healthy: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node's registration and last heartbeat."""

    name: str
    roles: tuple[str, ...]
    address: str
    internal_address: str
    version: str
    heartbeat_at_ms: int
    created_at_ms: int
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, ServiceHealth] = field(default_factory=dict)

    def ready(self, now_ms: int | None = None) -> bool:
        """Heartbeat within the grace period and every reported service healthy."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        fresh = now - self.heartbeat_at_ms < NODE_GRACE_PERIOD_S * 1000
        return fresh and all(service.healthy for service in self.services.values())

    def to_json(self) -> bytes:
        """The stored form (compact JSON)."""
        data: dict[str, Any] = {
            "name": self.name,
            "roles": list(self.roles),
            "address": self.address,
            "internalAddress": self.internal_address,
            "hostname": self.hostname,
            "version": self.version,
            "labels": dict(self.labels),
            "heartbeatAtMs": self.heartbeat_at_ms,
            "createdAtMs": self.created_at_ms,
            "services": {
                name: {"healthy": s.healthy, "detail": s.detail}
                for name, s in sorted(self.services.items())
            },
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> NodeRecord:
        """Parse the stored form; ValueError when it is not a node record."""
        return cls.from_data(json.loads(raw))

    @classmethod
    def from_data(cls, data: Any) -> NodeRecord:
        """A record from the stored form's decoded JSON; ValueError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError("not a node record")
        services = {
            str(name): ServiceHealth(bool(s.get("healthy")), str(s.get("detail", "")))
            for name, s in dict(data.get("services") or {}).items()
        }
        return cls(
            name=data["name"],
            roles=tuple(str(r) for r in data.get("roles") or ()),
            address=str(data.get("address", "")),
            internal_address=str(data.get("internalAddress", "")),
            hostname=str(data.get("hostname", "")),
            version=str(data.get("version", "")),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            heartbeat_at_ms=int(data.get("heartbeatAtMs", 0)),
            created_at_ms=int(data.get("createdAtMs", 0)),
            services=services,
        )


def node_key(name: str) -> str:
    """The store key of a node's record."""
    return NODES_PREFIX + name


async def write_node(store: Store, record: NodeRecord) -> int:
    """Write (or refresh) a node's record; returns the store revision."""
    return await store.put(node_key(record.name), record.to_json())


async def list_nodes(store: Store) -> tuple[list[NodeRecord], int]:
    """Every registered node in name order (unreadable records skipped), and the revision."""
    kvs, revision = await store.range(NODES_PREFIX)
    return [record for kv in kvs if (record := _decode(kv)) is not None], revision


async def remove_node(store: Store, name: str) -> None:
    """Forget a node (it left the cluster file)."""
    await store.delete(node_key(name))


def _decode(kv: KeyValue) -> NodeRecord | None:
    try:
        return NodeRecord.from_json(kv.value)
    except (ValueError, TypeError, KeyError):
        return None
