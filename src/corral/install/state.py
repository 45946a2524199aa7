"""`<stem>.corralstate`: what `corral up` built (RKE's cluster.rkestate).

JSON, mode 0600, written atomically (temporary file, fsync, rename) after every step that
changed something, so a run that stops half-way leaves a state the next run continues from.
It holds secrets (the cluster CA key, the admin password and token): back it up somewhere safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral import __version__
from corral.install.cluster_pki import ClusterPki
from corral.install.desired import DesiredCluster

STATE_VERSION = 1
STATE_SUFFIX = ".corralstate"
STATE_MODE = 0o600
LB_NODE = "load-balancer"  # the external load balancer's entry in `nodes`


class StateError(Exception):
    """The state file cannot be read or written; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as the last run left it: its addresses, roles and services (name → the
    digest of the service's command line, environment and files)."""

    name: str
    address: str
    internal_address: str
    roles: tuple[str, ...]
    services: Mapping[str, str] = field(default_factory=dict)
    # how an SSH node is logged in to (user, port, key, agent), so a node removed from the
    # cluster file can still be reached to stop its services; {} for local nodes
    ssh: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The state file's form."""
        data: dict[str, Any] = {
            "name": self.name,
            "address": self.address,
            "internalAddress": self.internal_address,
            "roles": list(self.roles),
            "services": dict(sorted(self.services.items())),
        }
        if self.ssh:
            data["ssh"] = dict(sorted(self.ssh.items()))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeState:
        """Parse the state file's form."""
        return cls(
            name=str(data["name"]),
            address=str(data.get("address", "")),
            internal_address=str(data.get("internalAddress", "")),
            roles=tuple(str(r) for r in data.get("roles") or ()),
            services={str(k): str(v) for k, v in dict(data.get("services") or {}).items()},
            ssh={str(k): str(v) for k, v in dict(data.get("ssh") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class ClusterState:
    """Everything recorded about the cluster."""

    cluster_name: str
    fqdn: str
    provider: str
    base_dir: str
    pki: ClusterPki
    etcd_token: str
    admin_password: str
    etcd_members: tuple[str, ...] = ()  # the nodes of the etcd cluster (its members now)
    # node → (--initial-cluster, --initial-cluster-state) its member was started with
    etcd_initial: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    admin_token: str = ""
    nodes: Mapping[str, NodeState] = field(default_factory=dict)
    corral_version: str = __version__
    created_at: str = ""
    updated_at: str = ""

    def with_node(self, node: NodeState) -> ClusterState:
        """A copy with `node` recorded (replacing any earlier record of it)."""
        return replace(self, nodes={**self.nodes, node.name: node})

    def without_node(self, name: str) -> ClusterState:
        """A copy with node `name` forgotten."""
        return replace(self, nodes={k: v for k, v in self.nodes.items() if k != name})

    def to_json(self) -> dict[str, Any]:
        """The state file's form."""
        return {
            "version": STATE_VERSION,
            "clusterName": self.cluster_name,
            "fqdn": self.fqdn,
            "provider": self.provider,
            "baseDir": self.base_dir,
            "corralVersion": self.corral_version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "etcdToken": self.etcd_token,
            "etcdMembers": list(self.etcd_members),
            "etcdInitial": {name: {"cluster": cluster, "state": state}
                            for name, (cluster, state) in sorted(self.etcd_initial.items())},
            "admin": {"password": self.admin_password, "token": self.admin_token},
            "pki": self.pki.to_json(),
            "nodes": {name: node.to_json() for name, node in sorted(self.nodes.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterState:
        """Parse the state file's form; KeyError/TypeError/ValueError when it is not one."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
        admin = dict(data.get("admin") or {})
        return cls(
            cluster_name=str(data["clusterName"]),
            fqdn=str(data["fqdn"]),
            provider=str(data["provider"]),
            base_dir=str(data["baseDir"]),
            pki=ClusterPki.from_json(data["pki"]),
            etcd_token=str(data["etcdToken"]),
            admin_password=str(admin["password"]),
            admin_token=str(admin.get("token", "")),
            etcd_members=tuple(str(m) for m in data.get("etcdMembers") or ()),
            etcd_initial={
                str(k): (str(v["cluster"]), str(v["state"]))
                for k, v in dict(data.get("etcdInitial") or {}).items()
            },
            nodes={
                str(k): NodeState.from_json(v) for k, v in dict(data.get("nodes") or {}).items()
            },
            corral_version=str(data.get("corralVersion", "")),
            created_at=str(data.get("createdAt", "")),
            updated_at=str(data.get("updatedAt", "")),
        )


def state_path(desired: DesiredCluster) -> Path:
    """`<stem>.corralstate` beside the cluster file."""
    return desired.source.with_name(desired.stem + STATE_SUFFIX)


def new_state(desired: DesiredCluster, pki: ClusterPki, base_dir: Path) -> ClusterState:
    """The state of a cluster about to be built: fresh secrets, no nodes yet."""
    now = _now()
    return ClusterState(
        cluster_name=desired.cluster_name,
        fqdn=desired.fqdn,
        provider=desired.provider,
        base_dir=str(base_dir),
        pki=pki,
        etcd_token=f"corral-{desired.cluster_name}-{secrets.token_hex(8)}",
        admin_password=secrets.token_urlsafe(18),
        created_at=now,
        updated_at=now,
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_state(path: Path) -> ClusterState | None:
    """The recorded state, or None when `path` does not exist."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}: check its permissions") from None
    try:
        return ClusterState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(
            f"{path} is not a corral state file ({exc}): restore it from your backup, or move "
            "it aside to build a new cluster (with a new CA and admin password)"
        ) from None


def save_state(path: Path, state: ClusterState) -> ClusterState:
    """Write `state` to `path` atomically with mode 0600; returns it with `updated_at` set."""
    stamped = replace(state, updated_at=_now(), corral_version=__version__)
    text = json.dumps(stamped.to_json(), indent=2, sort_keys=False) + "\n"
    write_private(path, text.encode())
    return stamped


def write_private(path: Path, data: bytes, mode: int = STATE_MODE) -> None:
    """Write `data` to `path` atomically, never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
