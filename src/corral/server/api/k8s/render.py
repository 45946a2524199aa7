"""Node records as the Kubernetes API shows them: v1 `Node`, `NodeList`, the `meta.k8s.io`
`Table` kubectl prints, and `Status` errors. Pure functions of the records and a clock.

The Table's cells are what the Kubernetes API server's node printer puts there (NAME, STATUS,
ROLES, AGE, VERSION, and the `-o wide` ones), so kubectl prints exactly what it prints for a
real cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from corral.server.domain.clock import iso_time
from corral.server.domain.nodes import NODE_GRACE_PERIOD_S, NodeRecord

ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"
LEGACY_ROLE_LABEL = "kubernetes.io/role"
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
NODE_OS = "linux"
NONE = "<none>"
UNKNOWN = "<unknown>"
# Node uids are stable for one registration of a name (uuid5 of name and creation time).
_UID_NAMESPACE = uuid.UUID("6f1f6c8e-3a52-4a8e-9d6b-9c1f0c7d2b10")

IncludeObject = Literal["None", "Metadata", "Object"]
TableVersion = Literal["v1", "v1beta1"]

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated."
)
_AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC."
)
_ADDRESSES_DOC = "List of addresses reachable to the node."
# (name, description, priority): the node printer's columns; priority 1 = only with -o wide
NODE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("Name", _NAME_DOC, 0),
    ("Status", "The status of the node", 0),
    ("Roles", "The roles of the node", 0),
    ("Age", _AGE_DOC, 0),
    ("Version", "Kubelet Version reported by the node.", 0),
    ("Internal-IP", _ADDRESSES_DOC, 1),
    ("External-IP", _ADDRESSES_DOC, 1),
    ("OS-Image", "OS Image reported by the node from /etc/os-release.", 1),
    ("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", 1),
    ("Container-Runtime", "ContainerRuntime Version reported by the node.", 1),
)


def human_duration(seconds: float) -> str:
    """A duration as Kubernetes prints ages (apimachinery's `HumanDuration`): `45s`, `5m30s`,
    `2h13m`, `3d4h`, `400d`, `2y30d`."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def node_labels(record: NodeRecord) -> dict[str, str]:
    """The record's labels plus those RKE puts on every node: one
    `node-role.kubernetes.io/<role>=true` per role, hostname and OS."""
    labels = {
        OS_LABEL: NODE_OS,
        HOSTNAME_LABEL: record.hostname or record.name,
        **{f"{ROLE_LABEL_PREFIX}{role}": "true" for role in record.roles},
    }
    labels.update(record.labels)
    return dict(sorted(labels.items()))


def node_roles(labels: Mapping[str, str]) -> list[str]:
    """The roles kubectl shows, from the labels (as the node printer finds them), sorted."""
    roles = set()
    for key, value in labels.items():
        if key.startswith(ROLE_LABEL_PREFIX) and key != ROLE_LABEL_PREFIX:
            roles.add(key[len(ROLE_LABEL_PREFIX) :])
        elif key == LEGACY_ROLE_LABEL and value:
            roles.add(value)
    return sorted(roles)


def ready_condition(record: NodeRecord, now_ms: int) -> dict[str, str]:
    """The node's `Ready` condition: True, False (a service unhealthy) or Unknown (no
    heartbeat within the grace period, as the node controller marks a silent kubelet)."""
    heartbeat = iso_time(record.heartbeat_at_ms)
    base = {"type": "Ready", "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat}
    age_s = (now_ms - record.heartbeat_at_ms) / 1000
    if age_s >= NODE_GRACE_PERIOD_S:  # NodeRecord.ready's rule, kept apart to say why
        return {
            **base,
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "message": f"corral stopped posting node status {human_duration(age_s)} ago.",
        }
    sick = sorted(name for name, health in record.services.items() if not health.healthy)
    if sick:
        details = "; ".join(f"{name}: {record.services[name].detail}".rstrip(": ") for name in sick)
        return {**base, "status": "False", "reason": "ServicesNotReady", "message": details}
    return {**base, "status": "True", "reason": "CorralReady", "message": "corral is ready"}


def node_status_text(record: NodeRecord, now_ms: int) -> str:
    """The STATUS column: `Ready`, or `NotReady` for a condition other than True."""
    return "Ready" if ready_condition(record, now_ms)["status"] == "True" else "NotReady"


def node_metadata(record: NodeRecord, resource_version: int) -> dict[str, Any]:
    """ObjectMeta of the node."""
    return {
        "name": record.name,
        "uid": str(uuid.uuid5(_UID_NAMESPACE, f"{record.name}/{record.created_at_ms}")),
        "resourceVersion": str(resource_version),
        "creationTimestamp": iso_time(record.created_at_ms),
        "labels": node_labels(record),
    }


def node_addresses(record: NodeRecord) -> list[dict[str, str]]:
    """InternalIP, ExternalIP (when the address differs from the internal one), Hostname."""
    addresses = []
    if record.internal_address:
        addresses.append({"type": "InternalIP", "address": record.internal_address})
    if record.address and record.address != record.internal_address:
        addresses.append({"type": "ExternalIP", "address": record.address})
    addresses.append({"type": "Hostname", "address": record.hostname or record.name})
    return addresses


def node_object(record: NodeRecord, *, now_ms: int, resource_version: int) -> dict[str, Any]:
    """A v1 `Node`."""
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": node_metadata(record, resource_version),
        "spec": {},
        "status": {
            "conditions": [ready_condition(record, now_ms)],
            "addresses": node_addresses(record),
            "nodeInfo": {
                "kubeletVersion": record.version,
                "kubeProxyVersion": record.version,
                "operatingSystem": NODE_OS,
                "architecture": "",
                "osImage": "",
                "kernelVersion": "",
                "containerRuntimeVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def node_list(records: Iterable[NodeRecord], *, now_ms: int, revision: int) -> dict[str, Any]:
    """A v1 `NodeList`."""
    return {
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(revision)},
        "items": [node_object(r, now_ms=now_ms, resource_version=revision) for r in records],
    }


def _address_of(record: NodeRecord, kind: str) -> str:
    return next((a["address"] for a in node_addresses(record) if a["type"] == kind), NONE)


def node_cells(record: NodeRecord, now_ms: int) -> list[str]:
    """One Table row's cells, in NODE_COLUMNS order."""
    roles = ",".join(node_roles(node_labels(record))) or NONE
    return [
        record.name,
        node_status_text(record, now_ms),
        roles,
        human_duration((now_ms - record.created_at_ms) / 1000) if record.created_at_ms else UNKNOWN,
        record.version,
        _address_of(record, "InternalIP"),
        _address_of(record, "ExternalIP"),
        UNKNOWN,
        UNKNOWN,
        UNKNOWN,
    ]


def node_table(
    records: Sequence[NodeRecord],
    *,
    now_ms: int,
    revision: int,
    version: TableVersion = "v1",
    include: IncludeObject = "Metadata",
) -> dict[str, Any]:
    """A `meta.k8s.io` `Table` of the nodes (what `kubectl get nodes` prints)."""
    group_version = f"meta.k8s.io/{version}"
    rows = []
    for record in records:
        row: dict[str, Any] = {"cells": node_cells(record, now_ms)}
        if include == "Object":
            row["object"] = node_object(record, now_ms=now_ms, resource_version=revision)
        elif include == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": group_version,
                "metadata": node_metadata(record, revision),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": group_version,
        "metadata": {"resourceVersion": str(revision)},
        "columnDefinitions": [
            {
                "name": name,
                "type": "string",
                "format": "name" if name == "Name" else "",
                "description": description,
                "priority": priority,
            }
            for name, description, priority in NODE_COLUMNS
        ],
        "rows": rows,
    }


def status(
    code: int, reason: str, message: str, details: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A v1 `Status` failure, the body of every Kubernetes API error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body
