"""`/v3/subscribe` on a real server: authentication, resourceTypes filter, pings, visibility,
resume after reconnect without loss or duplicates, closing when the token dies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from tests.e2e.server.core_harness import CorralServer, start_server
from tests.e2e.server.test_api_support import (
    admin_token,
    api,
    create_user,
    receive_json,
    unique,
    ws_connect,
)

PING_SECONDS = "0.5"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    """A server whose subscribe pings every half second."""
    base: Path = tmp_path_factory.mktemp("events-server")
    running = start_server(base, env={"CORRAL_SUBSCRIBE_PING_SECONDS": PING_SECONDS})
    yield running
    running.stop()
    print(running.output())


def next_event(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping."""
    while True:
        message = receive_json(ws)
        if message["name"] != "ping":
            return message


def create_cluster(server: CorralServer, token: str) -> dict[str, Any]:
    """A new cluster resource."""
    with api(server, token) as client:
        response = client.post("/v3/clusters", json={"name": unique("ev")})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def test_subscribe_needs_login(server: CorralServer) -> None:
    """Without a token the handshake is refused with 401."""
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(server, "/v3/subscribe", None)
    assert refused.value.response.status_code == 401


def test_unknown_resource_type_is_refused(server: CorralServer) -> None:
    """An unknown resourceTypes value is a 422 at the handshake."""
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(server, "/v3/subscribe?resourceTypes=gadget", admin_token(server))
    assert refused.value.response.status_code == 422


def test_ping_arrives(server: CorralServer) -> None:
    """An idle subscription receives `{"name":"ping"}` messages."""
    with ws_connect(server, "/v3/subscribe", admin_token(server)) as ws:
        assert receive_json(ws, timeout=5)["name"] == "ping"


def test_filtered_change_and_remove_events(server: CorralServer) -> None:
    """With resourceTypes=cluster only cluster events arrive: change on create/update,
    remove on delete, each with the resource, its type and the store revision."""
    token = admin_token(server)
    with ws_connect(server, "/v3/subscribe?resourceTypes=cluster", token) as ws:
        create_user(server, token)  # a user event the filter must drop
        cluster = create_cluster(server, token)
        changed = next_event(ws)
        assert changed["name"] == "resource.change"
        assert changed["resourceType"] == "cluster"
        assert changed["data"]["id"] == cluster["id"]
        assert changed["data"]["links"]["self"] == cluster["links"]["self"]
        with api(server, token) as client:
            client.delete(cluster["links"]["remove"])
        removed = next_event(ws)
        assert removed["name"] == "resource.remove"
        assert removed["data"]["id"] == cluster["id"]
        assert int(removed["revision"]) > int(changed["revision"])


def test_resume_after_reconnect_loses_and_repeats_nothing(server: CorralServer) -> None:
    """Reconnecting with the last revision seen replays exactly the events missed, in order,
    then continues live."""
    token = admin_token(server)
    path = "/v3/subscribe?resourceTypes=cluster"
    with ws_connect(server, path, token) as ws:
        first = create_cluster(server, token)
        seen = next_event(ws)
        assert seen["data"]["id"] == first["id"]
    missed = [create_cluster(server, token)["id"] for _ in range(3)]
    with api(server, token) as client:
        client.delete(first["links"]["remove"])
    with ws_connect(server, f"{path}&revision={seen['revision']}", token) as ws:
        replayed = [next_event(ws) for _ in range(4)]
        assert [(e["name"], e["data"]["id"]) for e in replayed] == [
            *[("resource.change", cid) for cid in missed],
            ("resource.remove", first["id"]),
        ]
        revisions = [int(e["revision"]) for e in replayed]
        assert revisions == sorted(revisions) and revisions[0] > int(seen["revision"])
        live = create_cluster(server, token)
        assert next_event(ws)["data"]["id"] == live["id"]


def test_listing_revision_then_subscribe_misses_nothing(server: CorralServer) -> None:
    """A collection's `revision` is a resume point: changes after the listing are streamed."""
    token = admin_token(server)
    with api(server, token) as client:
        revision = client.get("/v3/clusters").json()["revision"]
    made = create_cluster(server, token)
    with ws_connect(server, f"/v3/subscribe?resourceTypes=cluster&revision={revision}",
                    token) as ws:
        assert next_event(ws)["data"]["id"] == made["id"]


def test_users_see_only_what_they_may_read(server: CorralServer) -> None:
    """A non-admin subscriber gets events about itself but not about other users."""
    admin = admin_token(server)
    me, token = create_user(server, admin)
    with ws_connect(server, "/v3/subscribe?resourceTypes=user", token) as ws:
        create_user(server, admin)
        with api(server, admin) as client:
            client.put(f"/v3/users/{me['id']}", json={"description": "touched"})
        event = next_event(ws)
        assert event["data"]["id"] == me["id"]
        assert event["data"]["description"] == "touched"


def test_subscription_closes_when_its_token_is_deleted(server: CorralServer) -> None:
    """Logging out ends open subscriptions of that token: the token's remove event, then an
    error event and close code 4401."""
    token = admin_token(server)
    with ws_connect(server, "/v3/subscribe", token) as ws:
        with api(server, token) as client:
            assert client.post("/v3/tokens?action=logout").status_code == 200
        removed = next_event(ws)
        assert removed["name"] == "resource.remove"
        assert removed["data"]["id"] == token.partition(":")[0]
        error = next_event(ws)
        assert error["name"] == "resource.error"
        assert error["data"]["status"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
