"""What a node's supervisor runs: `<node>/run/supervisor.json`, written by `corral up`.

Each service with its command line, environment, health probe and digest (the digest changes
exactly when the service must restart), and where the node's heartbeat goes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.install.providers.base import NodePaths
from corral.install.services import HealthProbe


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One service as the supervisor runs it."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    health: HealthProbe
    digest: str

    def to_json(self) -> dict[str, Any]:
        """The spec file's form."""
        return {
            "name": self.name,
            "argv": list(self.argv),
            "env": dict(self.env),
            "health": self.health.to_json(),
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceEntry:
        """Parse the spec file's form."""
        return cls(
            str(data["name"]),
            tuple(str(a) for a in data["argv"]),
            {str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
            HealthProbe.from_json(data["health"]),
            str(data["digest"]),
        )


@dataclass(frozen=True, slots=True)
class HeartbeatSpec:
    """Where and as what the node's record is written (None in the spec: no heartbeat)."""

    name: str
    roles: tuple[str, ...]
    address: str
    internal_address: str
    endpoints: tuple[str, ...]
    cafile: str
    certfile: str
    keyfile: str
    prefix: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The spec file's form."""
        return {
            "name": self.name,
            "roles": list(self.roles),
            "address": self.address,
            "internalAddress": self.internal_address,
            "endpoints": list(self.endpoints),
            "cafile": self.cafile,
            "certfile": self.certfile,
            "keyfile": self.keyfile,
            "prefix": self.prefix,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeartbeatSpec:
        """Parse the spec file's form."""
        return cls(
            str(data["name"]),
            tuple(str(r) for r in data.get("roles") or ()),
            str(data.get("address", "")),
            str(data.get("internalAddress", "")),
            tuple(str(e) for e in data.get("endpoints") or ()),
            str(data.get("cafile", "")),
            str(data.get("certfile", "")),
            str(data.get("keyfile", "")),
            str(data.get("prefix", "")),
            {str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """Everything one node's supervisor runs."""

    services: tuple[ServiceEntry, ...]
    heartbeat: HeartbeatSpec | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec file's form."""
        return {
            "services": [s.to_json() for s in self.services],
            "heartbeat": self.heartbeat.to_json() if self.heartbeat else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SupervisorSpec:
        """Parse the spec file's form."""
        beat = data.get("heartbeat")
        return cls(
            tuple(ServiceEntry.from_json(s) for s in data.get("services") or ()),
            HeartbeatSpec.from_json(beat) if beat else None,
        )

    @property
    def digests(self) -> dict[str, str]:
        """Service name → digest."""
        return {s.name: s.digest for s in self.services}


def read_spec(paths: NodePaths) -> SupervisorSpec:
    """The node's spec file (an empty spec when there is none)."""
    try:
        return SupervisorSpec.from_json(json.loads(paths.supervisor_spec.read_text()))
    except FileNotFoundError:
        return SupervisorSpec(())


def spec_json(spec: SupervisorSpec) -> bytes:
    """The spec file's bytes."""
    return (json.dumps(spec.to_json(), indent=2) + "\n").encode()
