"""`kubectl get nodes` against a real `corral server`: the kubeconfig `corral up` writes (server
URL, CA data, an admin token from logging in), node records in the server's etcd store, Ready /
NotReady by heartbeat age, JSON output, errors as Kubernetes answers them, and the same through
`corral lb` (TLS terminated there, X-Forwarded-Proto https to the server's HTTP port)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.k8s.harness import (
    Kubectl,
    cacerts,
    kubeconfig,
    node,
    table,
    write_nodes,
)
from tests.e2e.lb.harness import LbProcess, lb_config, make_certs
from tests.e2e.server.core_harness import CorralServer
from tests.support.etcd_cluster import EtcdCluster

ALL_ROLES = ("controlplane", "etcd", "worker")


@pytest.fixture(scope="module")
def nodes(etcd: EtcdCluster, server: CorralServer) -> None:
    """node-1: all roles, heartbeat 2 s ago; node-2: worker, silent for 2 minutes."""
    fresh = node("node-1", ALL_ROLES, heartbeat_age_s=2, created_days_ago=5, address="127.0.1.1")
    silent = node(
        "node-2", ("worker",), heartbeat_age_s=120, created_days_ago=1, address="127.0.1.2"
    )
    write_nodes(etcd, [fresh, silent])


@pytest.fixture(scope="module")
def token(server: CorralServer) -> str:
    """An admin token obtained by logging in."""
    return server.login_token()


@pytest.fixture
def kubectl(server: CorralServer, token: str, nodes: None, tmp_path: Path) -> Kubectl:
    """kubectl with a kubeconfig for the server's HTTPS port."""
    config = kubeconfig(
        tmp_path / "kube_config_cluster.yml", server.https_url, cacerts(server), token
    )
    return Kubectl(config, tmp_path / "cache")


def test_get_nodes_prints_the_columns(kubectl: Kubectl) -> None:
    """NAME STATUS ROLES AGE VERSION; Ready and NotReady by heartbeat age; roles; age."""
    rows = table(kubectl.ok("get", "nodes"))
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows[1] == ["node-1", "Ready", "controlplane,etcd,worker", "5d", "v2.5.0"]
    assert rows[2] == ["node-2", "NotReady", "worker", "24h", "v2.5.0"]


def test_get_nodes_wide_and_by_name(kubectl: Kubectl) -> None:
    """-o wide adds INTERNAL-IP; `get node NAME` prints one row; the short name `no` works."""
    wide = table(kubectl.ok("get", "nodes", "-o", "wide"))
    assert wide[0][:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    assert [row[5] for row in wide[1:]] == ["127.0.1.1", "127.0.1.2"]
    one = table(kubectl.ok("get", "no", "node-2"))
    assert [row[:2] for row in one] == [["NAME", "STATUS"], ["node-2", "NotReady"]]


def test_get_nodes_json(kubectl: Kubectl) -> None:
    """-o json: v1 Nodes with names, role labels and the Ready condition."""
    listing = json.loads(kubectl.ok("get", "nodes", "-o", "json"))
    assert listing["kind"] == "List"
    items = {item["metadata"]["name"]: item for item in listing["items"]}
    assert set(items) == {"node-1", "node-2"}
    assert all(item["kind"] == "Node" and item["apiVersion"] == "v1" for item in items.values())
    ready = {
        name: next(c["status"] for c in item["status"]["conditions"] if c["type"] == "Ready")
        for name, item in items.items()
    }
    assert ready == {"node-1": "True", "node-2": "Unknown"}
    labels = items["node-1"]["metadata"]["labels"]
    assert {labels[f"node-role.kubernetes.io/{role}"] for role in ALL_ROLES} == {"true"}


def test_a_fresh_heartbeat_makes_the_node_ready(
    kubectl: Kubectl, etcd: EtcdCluster, server: CorralServer
) -> None:
    """node-3 silent → NotReady; once its supervisor writes a heartbeat → Ready."""
    write_nodes(etcd, [node("node-3", ("etcd",), heartbeat_age_s=41, created_days_ago=0.01,
                            address="127.0.1.3")])  # fmt: skip
    assert table(kubectl.ok("get", "node", "node-3"))[1][1] == "NotReady"
    write_nodes(etcd, [node("node-3", ("etcd",), heartbeat_age_s=0, created_days_ago=0.01,
                            address="127.0.1.3")])  # fmt: skip
    assert table(kubectl.ok("get", "node", "node-3"))[1][1] == "Ready"


def test_label_selector(kubectl: Kubectl) -> None:
    """kubectl -l selects by the role labels."""
    rows = table(kubectl.ok("get", "nodes", "-l", "node-role.kubernetes.io/controlplane=true"))
    assert [row[0] for row in rows[1:]] == ["node-1"]


def test_unknown_node_is_not_found(kubectl: Kubectl) -> None:
    """A missing node is kubectl's NotFound error."""
    done = kubectl.run("get", "node", "nope")
    assert done.returncode == 1
    assert 'Error from server (NotFound): nodes "nope" not found' in done.stderr


def test_bad_token_is_unauthorized(server: CorralServer, nodes: None, tmp_path: Path) -> None:
    """A token the server does not know: kubectl says the login is needed."""
    config = kubeconfig(
        tmp_path / "kc.yml", server.https_url, cacerts(server), "token-abcde:not-the-secret"
    )
    done = Kubectl(config, tmp_path / "cache").run("get", "nodes")
    assert done.returncode == 1
    assert "You must be logged in to the server" in done.stderr  # (Unauthorized) in 1.20


def test_unauthenticated_requests_get_a_status(server: CorralServer) -> None:
    """Without credentials: 401 with a v1 Status body; /version is public, as in Kubernetes."""
    with httpx.Client(base_url=server.http_url, headers={"X-Forwarded-Proto": "https"}) as client:
        nodes = client.get("/api/v1/nodes")
        version = client.get("/version")
    assert nodes.status_code == 401
    assert nodes.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    }  # fmt: skip
    assert version.status_code == 200
    assert version.json()["gitVersion"].startswith("v1.20.0-corral+v")


def test_non_admin_is_forbidden(server: CorralServer, token: str, nodes: None) -> None:
    """A logged-in user who is not an admin may discover the API but not read nodes (403)."""
    headers = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=10) as client:
        created = client.post(
            "/v3/users",
            json={"username": "viewer", "password": "viewer-password-123"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        login = client.post(
            "/v3-public/localProviders/local?action=login",
            json={"username": "viewer", "password": "viewer-password-123"},
        )
        viewer = {"Authorization": f"Bearer {login.json()['token']}"}
        discovery = client.get("/api/v1", headers=viewer)
        listing = client.get("/api/v1/nodes", headers=viewer)
    assert discovery.status_code == 200
    assert listing.status_code == 403
    assert listing.json()["reason"] == "Forbidden"
    assert 'User "viewer" cannot list resource "nodes"' in listing.json()["message"]


def test_get_nodes_through_corral_lb(
    server: CorralServer, token: str, nodes: None, tmp_path: Path
) -> None:
    """Through the lb (X-Forwarded-Proto https to the plain-HTTP port) nothing is redirected."""
    certs = make_certs(tmp_path)
    lb = LbProcess(lb_config(certs, [f"127.0.0.1:{server.http_port}"]), tmp_path)
    try:
        lb.wait_listening()
        config = kubeconfig(
            tmp_path / "kc.yml", f"https://127.0.0.1:{lb.port}", certs.ca_pem.read_text(), token
        )
        rows = table(Kubectl(config, tmp_path / "cache").ok("get", "nodes"))
    finally:
        lb.stop()
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [row[:2] for row in rows[1:3]] == [["node-1", "Ready"], ["node-2", "NotReady"]]


def test_read_only_and_unknown_paths(server: CorralServer, token: str) -> None:
    """Writes are 405 and paths outside the slice 404, both as Status objects."""
    headers = {"X-Forwarded-Proto": "https", "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.http_url, headers=headers, timeout=10) as client:
        write = client.post("/api/v1/nodes", json={"kind": "Node"})
        pods = client.get("/api/v1/namespaces/default/pods")
        group = client.get("/apis/apps/v1")
    assert (write.status_code, write.json()["reason"]) == (405, "MethodNotAllowed")
    assert (pods.status_code, pods.json()["kind"], pods.json()["reason"]) == (
        404, "Status", "NotFound",
    )  # fmt: skip
    assert group.status_code == 404
