"""The one translation of domain and store errors to the wire (corral.server.api.errors), and
an in-process API whose store fails: 503 in the error envelope naming the store, never a 500;
routes that need no login still answer; a subscription gets a 503 error event."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.websockets import WebSocketDisconnect

from corral.server.api import build_routes
from corral.server.api.errors import to_api_error
from corral.server.auth import AuthMiddleware, bootstrap_admin
from corral.server.context import ServerContext
from corral.server.domain import errors as domain
from corral.store import StoreClosed
from corral.store.base import CompareFailed, StoreUnavailable
from tests.support.flaky_store import NAME, FlakyStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "unit-test-password"
DOWN_MESSAGE = f"the store ({NAME}) is unavailable: connection refused; try again"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (domain.NotFound("user 'u-1' not found"), 404, "NotFound"),
        (domain.AlreadyExists("username 'ann' is already taken"), 409, "Conflict"),
        (domain.ChangedConcurrently("user 'u-1' was changed"), 409, "Conflict"),
        (domain.Invalid("field 'value' must be…"), 422, "InvalidBodyContent"),
        (domain.ReadOnly("setting 'cacerts' is read-only"), 403, "Forbidden"),
    ],
)
def test_domain_errors_keep_their_message(
    error: domain.DomainError, status: int, code: str
) -> None:
    """Each domain error has one status and code; the message goes out unchanged."""
    answer = to_api_error(error)
    assert (answer.status, answer.code, answer.message) == (status, code, error.message)


def test_store_unavailable_is_503_naming_the_store() -> None:
    """StoreUnavailable: 503 ServiceUnavailable with the store's message, "try again" and a
    Retry-After header; a message that does not name the store is prefixed so it does."""
    named = to_api_error(StoreUnavailable("the store (etcd https://10.0.0.1:2379) is "
                                          "unavailable: no quorum"))
    assert (named.status, named.code) == (503, "ServiceUnavailable")
    assert named.message == ("the store (etcd https://10.0.0.1:2379) is unavailable: "
                             "no quorum; try again")
    assert named.headers == {"Retry-After": "1"}
    bare = to_api_error(StoreUnavailable("deadline exceeded"))
    assert bare.message == "the store is unavailable: deadline exceeded; try again"
    closed = to_api_error(StoreClosed())
    assert closed.status == 503 and "stopping" in closed.message
    assert to_api_error(CompareFailed("key 'x' is absent")).status == 409


def test_other_errors_are_not_translated() -> None:
    """Anything that is neither an API, domain nor store error is refused (stays a 500)."""
    with pytest.raises(TypeError):
        to_api_error(ValueError("bug"))


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
    tuple[TestClient, FlakyStore]
]:
    """An in-process API on a FlakyStore with an admin logged in (header preset)."""
    monkeypatch.setenv("CORRAL_BOOTSTRAP_PASSWORD", PASSWORD)
    store = FlakyStore()
    ctx = ServerContext(store=store, data_dir=tmp_path)
    app = AuthMiddleware(Starlette(routes=build_routes(ctx)), ctx)
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(bootstrap_admin, ctx)
        login = client.post(
            "/v3-public/localProviders/local?action=login",
            json={"username": "admin", "password": PASSWORD},
        )
        client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield client, store


def test_store_down_is_503_in_the_envelope(setup: tuple[TestClient, FlakyStore]) -> None:
    """Reads, writes and logins with the store down answer 503 with the error envelope."""
    client, store = setup
    store.down = True
    for response in (
        client.get("/v3/clusters"),
        client.post("/v3/clusters", json={"name": "down"}),
        client.post("/v3-public/localProviders/local?action=login",
                    json={"username": "admin", "password": PASSWORD},
                    headers={"Authorization": ""}),
    ):
        assert response.status_code == 503, response.text
        assert response.json() == {"type": "error", "status": 503,
                                   "code": "ServiceUnavailable", "message": DOWN_MESSAGE}
        assert response.headers["retry-after"] == "1"
    store.down = False
    assert client.get("/v3/clusters").status_code == 200


def test_public_routes_answer_with_the_store_down(
    setup: tuple[TestClient, FlakyStore]
) -> None:
    """A route that needs no login (the `cacerts` setting) answers even when the presented
    token cannot be checked."""
    client, store = setup
    store.down = True
    assert client.get("/v3/settings/cacerts").status_code == 200
    assert client.get("/v3-public/localProviders").status_code == 200


def test_subscription_gets_a_503_error_event(setup: tuple[TestClient, FlakyStore]) -> None:
    """A watch that fails mid-stream sends resource.error 503 and closes with 4503."""
    client, store = setup
    assert client.portal is not None
    revision = client.portal.call(store.revision)
    store.watch_failures = 1
    assert client.post("/v3/clusters", json={"name": "trigger"}).status_code == 201
    with client.websocket_connect(f"/v3/subscribe?revision={revision}") as ws:
        message = ws.receive_json()
        assert message["name"] == "resource.error"
        assert message["data"] == {"type": "error", "status": 503,
                                   "code": "ServiceUnavailable", "message": DOWN_MESSAGE}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4503
