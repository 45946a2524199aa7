"""Three `corral server` processes on one real etcd cluster behave as one install: settings,
tokens, the CA and `cacerts`, and `/v3/subscribe` events (with resume by revision) cross from one
server to another; each server keeps its own audit log."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.ha.harness import HaServer, api_call, login, new_prefix, start_servers
from tests.e2e.server.test_api_shell import Shell
from tests.e2e.server.test_api_support import receive_json, unique, ws_connect
from tests.support.etcd_cluster import EtcdCluster
from tests.support.net import wait_until


@pytest.fixture(scope="module")
def install(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    list[HaServer]
]:
    """Three servers of one install, shared by the module's tests (none of them stops one)."""
    servers = start_servers(tmp_path_factory.mktemp("install"), etcd, new_prefix(), 3)
    yield servers
    for server in servers:
        server.stop()
        print(f"--- corral server (http {server.http_port}) ---\n{server.output()[-6000:]}")


def next_event(ws: Any, timeout: float = 10) -> dict[str, Any]:
    """The next subscribe message that is not a ping."""
    while True:
        message = receive_json(ws, timeout=timeout)
        if message["name"] != "ping":
            return message


def create_cluster(server: HaServer, token: str) -> dict[str, Any]:
    """A new cluster resource, created through `server`."""
    response = api_call(server, "POST", "/v3/clusters", token, json={"name": unique("ha")})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_setting_written_through_one_server_is_read_through_another_within_a_second(
    install: list[HaServer],
) -> None:
    """PUT /v3/settings/ui-pl on server A; servers B and C answer the new value within 1 s."""
    a, b, c = install
    token = login(a)
    value = unique("brand")
    response = api_call(a, "PUT", "/v3/settings/ui-pl", token, json={"value": value})
    assert response.status_code == 200, response.text
    written = time.monotonic()

    def everywhere() -> bool:
        return all(api_call(s, "GET", "/v3/settings/ui-pl", token).json()["value"] == value
                   for s in (b, c))

    wait_until(everywhere, timeout=1.0, what="the setting on servers B and C")
    assert time.monotonic() - written <= 1.0


def test_the_server_url_set_through_one_server_applies_on_another(
    install: list[HaServer],
) -> None:
    """server-url changed through A is B's redirect target for plain HTTP within 1 s."""
    a, b, _ = install
    token = login(a)
    response = api_call(a, "PUT", "/v3/settings/server-url", token,
                        json={"value": "https://corral-ha.test"})
    assert response.status_code == 200, response.text

    def redirected() -> bool:
        answer = httpx.get(f"{b.http_url}/v3/clusters", headers={"Host": "corral-ha.test"},
                           timeout=5)
        return answer.status_code == 302 and answer.headers["location"].startswith(
            "https://corral-ha.test/")

    wait_until(redirected, timeout=1.0, what="server B to redirect to the new server-url")


def test_every_server_publishes_the_same_cacerts_and_serves_a_certificate_it_issued(
    install: list[HaServer],
) -> None:
    """GET /cacerts is the same CA on every server, and each server's HTTPS certificate
    verifies against that one CA (fetched from server A)."""
    published = [api_call(s, "GET", "/cacerts").text for s in install]
    assert published[0].startswith("-----BEGIN CERTIFICATE-----")
    assert published == [published[0]] * 3
    public = api_call(install[1], "GET", "/v3/settings/cacerts").json()["value"]
    assert public == published[0]
    ca_of_a = ssl.create_default_context(cafile=str(install[0].ca_path))
    for server in install:
        with httpx.Client(verify=ca_of_a, timeout=10) as client:
            assert client.get(f"{server.https_url}/ping").text == "pong"


def test_a_token_issued_by_one_server_is_accepted_and_revoked_everywhere(
    install: list[HaServer],
) -> None:
    """A login token from server A works on B and C; after logout on C, A and B refuse it."""
    a, b, c = install
    token = login(a)
    for server in (b, c):
        me = api_call(server, "GET", "/v3/users?me=true", token)
        assert me.status_code == 200, me.text
        assert me.json()["data"][0]["username"] == "admin"
    assert api_call(c, "POST", "/v3/tokens?action=logout", token).status_code == 200
    for server in (a, b):
        assert api_call(server, "GET", "/v3/users?me=true", token).status_code == 401


def test_subscribe_on_one_server_streams_changes_made_through_another_and_resumes_anywhere(
    install: list[HaServer],
) -> None:
    """A subscription on B receives a cluster created through A; reconnecting to C with
    ?revision=<last seen> replays exactly the events made meanwhile (through A and B), in
    order, then continues live."""
    a, b, c = install
    token = login(a)
    path = "/v3/subscribe?resourceTypes=cluster"
    with ws_connect(b, path, token) as ws:
        first = create_cluster(a, token)
        seen = next_event(ws)
        assert (seen["name"], seen["data"]["id"]) == ("resource.change", first["id"])
    missed = [create_cluster(server, token)["id"] for server in (a, b, a)]
    with ws_connect(c, f"{path}&revision={seen['revision']}", token) as ws:
        replayed = [next_event(ws) for _ in missed]
        assert [e["data"]["id"] for e in replayed] == missed
        revisions = [int(e["revision"]) for e in replayed]
        assert revisions == sorted(revisions) and revisions[0] > int(seen["revision"])
        live = create_cluster(b, token)
        assert next_event(ws)["data"]["id"] == live["id"]


def test_each_server_writes_its_own_audit_log(install: list[HaServer]) -> None:
    """With AUDIT_LEVEL=1 and a different AUDIT_LOG_PATH each, a request through A is logged in
    A's file only, and one through B in B's file only."""
    a, b, _ = install
    assert a.audit_path != b.audit_path
    token = login(a)
    marker_a, marker_b = unique("audit-a"), unique("audit-b")
    api_call(a, "GET", f"/v3/clusters?name={marker_a}", token)
    api_call(b, "GET", f"/v3/clusters?name={marker_b}", token)

    def uris(server: HaServer) -> list[str]:
        if not server.audit_path.exists():
            return []
        return [json.loads(line)["requestURI"] for line in
                server.audit_path.read_text().splitlines() if line.strip()]

    wait_until(lambda: any(marker_a in u for u in uris(a)), timeout=5, what="A's audit record")
    wait_until(lambda: any(marker_b in u for u in uris(b)), timeout=5, what="B's audit record")
    assert not any(marker_b in u for u in uris(a))
    assert not any(marker_a in u for u in uris(b))


def test_the_shell_starts_every_time_on_a_server_holding_etcd_connections(
    install: list[HaServer],
) -> None:
    """Admin shells opened one after another on an HA server (its etcd client's gRPC threads
    running) all start and run a command: starting the shell does not fork the threaded
    server in a way its libraries abort."""
    server = install[0]
    token = login(server)
    for attempt in range(12):
        with ws_connect(server, "/v3/shell", token,
                        subprotocols=["base64.channel.k8s.io"]) as ws:  # type: ignore[list-item]
            shell = Shell(ws)
            assert f"alive-{attempt}" in shell.run(f"echo alive-{attempt}", "DONE"), shell.status
