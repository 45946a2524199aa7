"""Request plumbing through Starlette's TestClient (in-process, MemoryStore): the error
envelope for bad bodies, unknown fields, wrong methods and unknown paths."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from corral.server.api import build_routes
from corral.server.auth import AuthMiddleware, bootstrap_admin
from corral.server.context import ServerContext
from corral.store import open_store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "unit-test-password"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """An in-process API with an admin logged in (Authorization header preset)."""
    monkeypatch.setenv("CORRAL_BOOTSTRAP_PASSWORD", PASSWORD)
    ctx = ServerContext(store=open_store("memory://"), data_dir=tmp_path)
    app = AuthMiddleware(Starlette(routes=build_routes(ctx)), ctx)
    with TestClient(app) as test_client:
        assert test_client.portal is not None
        test_client.portal.call(bootstrap_admin, ctx)
        login = test_client.post(
            "/v3-public/localProviders/local?action=login",
            json={"username": "admin", "password": PASSWORD},
        )
        test_client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield test_client


def test_body_that_is_not_json(client: TestClient) -> None:
    """A body that is not JSON is 422 InvalidBodyContent."""
    response = client.post("/v3/clusters", content=b"{nope")
    assert response.status_code == 422
    assert response.json()["code"] == "InvalidBodyContent"
    assert "not valid JSON" in response.json()["message"]


def test_missing_and_unknown_fields_are_named(client: TestClient) -> None:
    """Missing fields are MissingRequired; unknown ones are refused by name."""
    missing = client.post("/v3/users", json={"password": "long-enough-password"})
    assert missing.status_code == 422
    assert missing.json() == {
        "type": "error", "status": 422, "code": "MissingRequired",
        "message": "field 'username' is required",
    }
    unknown = client.post("/v3/clusters", json={"name": "ok", "colour": "red"})
    assert unknown.json()["code"] == "InvalidBodyContent"
    assert "field 'colour' is not known here" in unknown.json()["message"]


def test_output_fields_sent_back_are_ignored(client: TestClient) -> None:
    """A client may PUT back what it read (id, type, links…) without errors."""
    created = client.post("/v3/clusters", json={"name": "roundtrip"}).json()
    created["description"] = "changed"
    updated = client.put(created["links"]["update"], json=created)
    assert updated.status_code == 200, updated.text
    assert updated.json()["description"] == "changed"


def test_wrong_method_is_405_in_the_envelope(client: TestClient) -> None:
    """An unsupported method gets the error envelope and an Allow header."""
    response = client.delete("/v3/settings")
    assert response.status_code == 405
    assert response.json()["code"] == "MethodNotAllowed"
    assert response.headers["allow"] == "GET"


def test_unknown_paths_and_actions(client: TestClient) -> None:
    """Unknown API paths are 404 NotFound; unknown actions 422 InvalidAction."""
    assert client.get("/v3/widgets").json()["code"] == "NotFound"
    assert client.get("/v3-public/nothing").status_code == 404
    action = client.post("/v3/users?action=explode", json={})
    assert action.status_code == 422 and action.json()["code"] == "InvalidAction"


def test_bad_limit_is_rejected(client: TestClient) -> None:
    """`?limit=0` is a 422 that names the allowed range."""
    response = client.get("/v3/users?limit=0")
    assert response.status_code == 422
    assert "between 1 and" in response.json()["message"]
