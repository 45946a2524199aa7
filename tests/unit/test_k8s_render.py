"""The Kubernetes slice's pure parts: Node/NodeList/Table rendering from node records, ages as
Kubernetes prints them, Accept negotiation and selectors, discovery documents."""

from __future__ import annotations

import pytest

from corral.server.api.k8s import discovery, render
from corral.server.api.k8s.negotiate import (
    BadSelector,
    NotAcceptable,
    label_selector,
    name_selector,
    representation,
)
from corral.server.domain.nodes import NodeRecord, ServiceHealth

NOW_MS = 1_700_000_000_000
DAY_MS = 86_400_000
ALL_ROLES = ("controlplane", "etcd", "worker")
KUBECTL_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def record(
    name: str = "node-1",
    *,
    heartbeat_age_s: float = 5,
    created_days_ago: float = 3,
    roles: tuple[str, ...] = ALL_ROLES,
    **extra: object,
) -> NodeRecord:
    fields: dict[str, object] = {
        "address": "127.0.1.1",
        "internal_address": "127.0.1.1",
        "version": "v2.5.0",
        **extra,
    }
    return NodeRecord(
        name=name,
        roles=roles,
        heartbeat_at_ms=NOW_MS - int(heartbeat_age_s * 1000),
        created_at_ms=NOW_MS - int(created_days_ago * DAY_MS),
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (330, "5m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (2 * 3600 + 13 * 60, "133m"),
        (7 * 3600 + 59 * 60, "7h59m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (5 * 86400, "5d"),
        (400 * 86400, "400d"),
        (365 * 2 * 86400 + 30 * 86400, "2y30d"),
        (365 * 9 * 86400, "9y"),
    ],
)
def test_ages_as_kubernetes_prints_them(seconds: float, text: str) -> None:
    """AGE uses apimachinery's HumanDuration steps."""
    assert render.human_duration(seconds) == text


def test_table_has_kubectls_columns_and_cells() -> None:
    """NAME STATUS ROLES AGE VERSION (then the -o wide ones) with the node's values."""
    table = render.node_table([record()], now_ms=NOW_MS, revision=42)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Status", "Roles", "Age", "Version"]
    assert all(c["priority"] == 1 for c in table["columnDefinitions"][5:])
    (row,) = table["rows"]
    assert row["cells"][:7] == [
        "node-1", "Ready", "controlplane,etcd,worker", "3d", "v2.5.0", "127.0.1.1", "<none>"
    ]  # fmt: skip
    assert len(row["cells"]) == len(names)
    assert table["metadata"]["resourceVersion"] == "42"


def test_row_object_is_partial_metadata_by_default() -> None:
    """Rows carry PartialObjectMetadata (labels for --show-labels), or the Node, or nothing."""
    rows = render.node_table([record()], now_ms=NOW_MS, revision=1)["rows"]
    assert rows[0]["object"]["kind"] == "PartialObjectMetadata"
    assert rows[0]["object"]["metadata"]["labels"]["node-role.kubernetes.io/etcd"] == "true"
    full = render.node_table([record()], now_ms=NOW_MS, revision=1, include="Object")["rows"]
    assert full[0]["object"]["kind"] == "Node"
    bare = render.node_table([record()], now_ms=NOW_MS, revision=1, include="None")["rows"]
    assert "object" not in bare[0]


def test_v1beta1_table() -> None:
    """A client asking for the v1beta1 Table gets that apiVersion."""
    table = render.node_table([record()], now_ms=NOW_MS, revision=1, version="v1beta1")
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("age_s", "status", "condition"),
    [
        (0, "Ready", "True"),
        (39.9, "Ready", "True"),
        (40, "NotReady", "Unknown"),
        (3600, "NotReady", "Unknown"),
    ],
)
def test_ready_by_heartbeat_age(age_s: float, status: str, condition: str) -> None:
    """Ready while the last heartbeat is younger than the 40 s grace period, then NotReady."""
    node = record(heartbeat_age_s=age_s)
    assert render.node_status_text(node, NOW_MS) == status
    assert render.ready_condition(node, NOW_MS)["status"] == condition
    assert node.ready(NOW_MS) is (condition == "True")  # the domain's rule, the same answer


def test_unhealthy_service_makes_the_node_not_ready() -> None:
    """A fresh heartbeat reporting a failed service is NotReady with a False condition."""
    services = {"server": ServiceHealth(False, "healthz 500"), "etcd": ServiceHealth(True)}
    node = record(services=services)
    condition = render.ready_condition(node, NOW_MS)
    assert (condition["status"], condition["message"]) == ("False", "server: healthz 500")
    assert render.node_cells(node, NOW_MS)[1] == "NotReady"


def test_roles_come_from_the_role_labels() -> None:
    """One node-role.kubernetes.io/<role>=true label per role; ROLES lists them sorted."""
    node = record(roles=("worker", "etcd"), labels={"kubernetes.io/role": "edge"})
    labels = render.node_labels(node)
    assert labels["node-role.kubernetes.io/worker"] == "true"
    assert labels["node-role.kubernetes.io/etcd"] == "true"
    assert render.node_cells(node, NOW_MS)[2] == "edge,etcd,worker"
    assert render.node_cells(record(roles=()), NOW_MS)[2] == "<none>"


def test_node_object_and_list() -> None:
    """A v1 Node: metadata (name, uid, creationTimestamp, labels), addresses, nodeInfo."""
    node = record(address="203.0.113.5", internal_address="10.0.0.5", hostname="host-5")
    body = render.node_list([node], now_ms=NOW_MS, revision=9)
    assert (body["kind"], body["apiVersion"]) == ("NodeList", "v1")
    (item,) = body["items"]
    assert (item["kind"], item["apiVersion"]) == ("Node", "v1")
    meta = item["metadata"]
    assert meta["name"] == "node-1"
    assert meta["creationTimestamp"] == "2023-11-11T22:13:20Z"
    assert meta["labels"]["kubernetes.io/hostname"] == "host-5"
    assert item["status"]["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "ExternalIP", "address": "203.0.113.5"},
        {"type": "Hostname", "address": "host-5"},
    ]
    assert item["status"]["nodeInfo"]["kubeletVersion"] == "v2.5.0"
    again = render.node_object(node, now_ms=NOW_MS + 1, resource_version=9)
    assert again["metadata"]["uid"] == meta["uid"]  # stable for one registration


def test_status_body() -> None:
    """Errors are v1 Status objects with code, reason and message."""
    body = render.status(404, "NotFound", 'nodes "x" not found', {"name": "x", "kind": "nodes"})
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'nodes "x" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "x", "kind": "nodes"},
    }


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (KUBECTL_ACCEPT, "table-v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "table-v1beta1"),
        ("application/json", "object"),
        ("application/json, */*", "object"),
        (None, "object"),
        ("application/vnd.kubernetes.protobuf,application/json", "object"),
        ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io,application/json", "object"),
    ],
)
def test_accept_negotiation(accept: str | None, kind: str) -> None:
    """The first servable media type wins: the Table kubectl asks for, else plain JSON."""
    assert representation(accept) == kind


def test_unservable_accept() -> None:
    """Only protobuf (or another Table group) is 406."""
    with pytest.raises(NotAcceptable):
        representation("application/vnd.kubernetes.protobuf")


def test_label_selector() -> None:
    """Equality-based terms and existence, as kubectl -l sends them."""
    labels = {"node-role.kubernetes.io/etcd": "true", "zone": "a"}
    assert label_selector("node-role.kubernetes.io/etcd=true")(labels)
    assert label_selector("zone==a,!gpu")(labels)
    assert not label_selector("zone!=a")(labels)
    assert not label_selector("node-role.kubernetes.io/worker")(labels)
    assert label_selector(None)(labels)


@pytest.mark.parametrize("text", ["zone in (a,b)", "=x", "bad key=1"])
def test_unsupported_label_selectors(text: str) -> None:
    """Set-based or malformed selectors are refused, not silently ignored."""
    with pytest.raises(BadSelector):
        label_selector(text)


def test_field_selector_by_name() -> None:
    """metadata.name= and != select nodes; other fields are refused."""
    assert name_selector("metadata.name=node-1")("node-1")
    assert not name_selector("metadata.name!=node-1")("node-1")
    with pytest.raises(BadSelector):
        name_selector("spec.unschedulable=true")


def test_discovery_documents() -> None:
    """/api lists v1, /api/v1 the cluster-scoped nodes (get, list, short name no), /apis none."""
    assert discovery.api_versions("h:443")["versions"] == ["v1"]
    (nodes,) = discovery.core_v1_resources()["resources"]
    assert (nodes["name"], nodes["kind"], nodes["namespaced"]) == ("nodes", "Node", False)
    assert nodes["verbs"] == ["get", "list"] and nodes["shortNames"] == ["no"]
    assert discovery.api_group_list()["groups"] == []


def test_version_names_kubernetes_and_corral() -> None:
    """gitVersion is a semver kubectl parses: the Kubernetes version, tagged with Corral's."""
    info = discovery.version_info("0.1.0")
    assert info["gitVersion"] == "v1.20.0-corral+v0.1.0"
    assert (info["major"], info["minor"]) == ("1", "20")
