"""`/v3/subscribe` resuming from a revision the store no longer keeps (in-process, a
MemoryStore with a two-revision history): an error event tells the client to list again."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.websockets import WebSocketDisconnect

from corral.server.api import build_routes
from corral.server.auth import AuthMiddleware, bootstrap_admin
from corral.server.context import ServerContext
from corral.server.domain.clock import now_ms
from corral.server.domain.nodes import NodeRecord, ServiceHealth, write_node
from corral.store import open_store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_compacted_revision_gets_an_error_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming from a forgotten revision yields resource.error 410 and close code 4410."""
    monkeypatch.setenv("CORRAL_BOOTSTRAP_PASSWORD", "unit-test-password")
    ctx = ServerContext(store=open_store("memory://", history=2), data_dir=tmp_path)
    app = AuthMiddleware(Starlette(routes=build_routes(ctx)), ctx)
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(bootstrap_admin, ctx)
        token = client.post(
            "/v3-public/localProviders/local?action=login",
            json={"username": "admin", "password": "unit-test-password"},
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        for n in range(3):
            assert client.post("/v3/clusters", headers=headers, json={"name": f"c{n}"}).is_success
        with client.websocket_connect("/v3/subscribe?revision=1", headers=headers) as ws:
            message = ws.receive_json()
            assert message["name"] == "resource.error"
            assert message["data"]["status"] == 410
            assert "list again" in message["data"]["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert closed.value.code == 4410


def test_a_node_heartbeat_is_a_node_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node record written by a node's supervisor reaches subscribers as a `node` change, with
    its readiness rendered as on /v3/nodes."""
    monkeypatch.setenv("CORRAL_BOOTSTRAP_PASSWORD", "unit-test-password")
    ctx = ServerContext(store=open_store("memory://"), data_dir=tmp_path)
    app = AuthMiddleware(Starlette(routes=build_routes(ctx)), ctx)
    record = NodeRecord(
        name="node-1", roles=("controlplane", "etcd", "worker"), address="127.0.1.1",
        internal_address="127.0.1.1", version="v0.1.0", heartbeat_at_ms=now_ms(),
        created_at_ms=now_ms(), services={"server": ServiceHealth(True)},
    )
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(bootstrap_admin, ctx)
        token = client.post(
            "/v3-public/localProviders/local?action=login",
            json={"username": "admin", "password": "unit-test-password"},
        ).json()["token"]
        revision = client.portal.call(ctx.store.revision)
        client.portal.call(write_node, ctx.store, record)
        with client.websocket_connect(
            f"/v3/subscribe?revision={revision}&resourceTypes=node",
            headers={"Authorization": f"Bearer {token}"},
        ) as ws:
            message = ws.receive_json()
    assert (message["name"], message["resourceType"]) == ("resource.change", "node")
    assert message["data"]["id"] == "node-1"
    assert message["data"]["state"] == "active"
