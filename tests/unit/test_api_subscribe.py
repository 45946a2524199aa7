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
