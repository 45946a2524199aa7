"""CRUD of users, settings, clusters and registration tokens, nodes, pagination, links from
X-Forwarded-*, the public cacerts setting and the OpenAPI description, on a real server."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.server.conftest import SHARED_SERVER_URL
from tests.e2e.server.core_harness import FQDN, CorralServer, curl
from tests.e2e.server.test_api_support import (
    admin_token,
    api,
    create_user,
    login,
    running_corral_lb,
    unique,
)


def test_cacerts_setting_is_public_and_is_the_ca(shared_corral_server: CorralServer) -> None:
    """GET /v3/settings/cacerts needs no login, is read-only, and holds the server's CA."""
    with api(shared_corral_server) as client:
        response = client.get("/v3/settings/cacerts")
    assert response.status_code == 200
    setting = response.json()
    assert setting["type"] == "setting" and setting["readOnly"] is True
    assert setting["value"].strip() == shared_corral_server.ca_path.read_text().strip()
    assert "update" not in setting["links"]


def test_private_settings_need_login(shared_corral_server: CorralServer) -> None:
    """Other settings and the settings list are 401 without login; unknown names 404."""
    with api(shared_corral_server) as client:
        assert client.get("/v3/settings").status_code == 401
        assert client.get("/v3/settings/server-url").status_code == 401
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        missing = client.get("/v3/settings/no-such-setting")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


def test_admin_updates_settings(shared_corral_server: CorralServer) -> None:
    """Writable settings change (and are checked); read-only ones are refused."""
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        listed = {s["id"]: s for s in client.get("/v3/settings").json()["data"]}
        assert listed["server-url"]["value"] == SHARED_SERVER_URL
        assert {"cacerts", "system-default-registry", "ui-pl"} <= set(listed)
        bad = client.put("/v3/settings/system-default-registry", json={"value": "https://x/"})
        assert bad.status_code == 422 and "system-default-registry" in bad.json()["message"]
        ok = client.put("/v3/settings/ui-pl", json={"value": "Ranch"})
        assert ok.status_code == 200 and ok.json()["value"] == "Ranch"
        assert ok.json()["customized"] is True
        assert client.get("/v3/settings/ui-pl").json()["value"] == "Ranch"
        read_only = client.put("/v3/settings/cacerts", json={"value": "x"})
        assert read_only.status_code == 403
        assert client.delete("/v3/settings/ui-pl").status_code == 405


def test_user_crud(shared_corral_server: CorralServer) -> None:
    """Admins create, read, update and delete users; usernames are unique; no hash leaks."""
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        username = unique("crud")
        created = client.post("/v3/users", json={
            "username": username, "password": "first-password-1", "name": "Crud"})
        assert created.status_code == 201
        user = created.json()
        assert user["type"] == "user" and user["username"] == username
        assert "passwordHash" not in user and "scrypt" not in created.text
        assert "first-password-1" not in created.text
        assert set(user["links"]) >= {"self", "update", "remove"}
        duplicate = client.post("/v3/users", json={"username": username,
                                                   "password": "first-password-1"})
        assert duplicate.status_code == 409 and duplicate.json()["code"] == "Conflict"
        updated = client.put(user["links"]["update"], json={"name": "Renamed"})
        assert updated.json()["name"] == "Renamed"
        assert client.get(user["links"]["self"]).json()["name"] == "Renamed"
        assert client.delete(user["links"]["remove"]).status_code == 200
        assert client.get(user["links"]["self"]).status_code == 404
    login_again = httpx.post(
        f"{shared_corral_server.http_url}/v3-public/localProviders/local?action=login",
        json={"username": username, "password": "first-password-1"},
        headers={"X-Forwarded-Proto": "https"}, timeout=10,
    )
    assert login_again.status_code == 401


def test_admin_cannot_delete_themselves(shared_corral_server: CorralServer) -> None:
    """Deleting the user you are logged in as is refused."""
    token = admin_token(shared_corral_server)
    with api(shared_corral_server, token) as client:
        me = client.get("/v3/users?me=true").json()["data"][0]
        response = client.delete(f"/v3/users/{me['id']}")
    assert response.status_code == 422
    assert "logged in as" in response.json()["message"]


def test_admin_sets_another_users_password(shared_corral_server: CorralServer) -> None:
    """`?action=setpassword` lets an admin reset a user's password."""
    admin = admin_token(shared_corral_server)
    user, _ = create_user(shared_corral_server, admin)
    with api(shared_corral_server, admin) as client:
        response = client.post(user["actions"]["setpassword"],
                               json={"newPassword": "reset-by-admin-1"})
    assert response.status_code == 200
    assert login(shared_corral_server, user["username"], "reset-by-admin-1")["token"]


def test_pagination_walks_a_filtered_collection(shared_corral_server: CorralServer) -> None:
    """`?limit=2` pages through users with `next` links until every match is seen once."""
    admin = admin_token(shared_corral_server)
    tag = unique("page")
    made = {create_user(shared_corral_server, admin, description=tag)[0]["id"]
            for _ in range(5)}
    seen: list[str] = []
    with api(shared_corral_server, admin) as client:
        url: str | None = f"/v3/users?description={tag}&limit=2"
        while url:
            page = client.get(url).json()
            assert page["type"] == "collection" and page["resourceType"] == "user"
            assert page["pagination"]["total"] == 5 and page["pagination"]["limit"] == 2
            assert len(page["data"]) <= 2
            seen += [u["id"] for u in page["data"]]
            url = page["pagination"]["next"]
            assert url == page["links"].get("next")
    assert sorted(seen) == sorted(made) and len(seen) == 5


def test_links_follow_forwarded_headers(shared_corral_server: CorralServer) -> None:
    """Links are absolute URLs built from X-Forwarded-Proto/-Host/-Port, or from Host."""
    token = admin_token(shared_corral_server)
    headers = {"Authorization": f"Bearer {token}"}
    base = shared_corral_server.http_url
    forwarded = httpx.get(f"{base}/v3/clusters", timeout=10, headers={
        **headers, "X-Forwarded-Proto": "https", "Host": "rancher.example.com",
        "X-Forwarded-Port": "8443"})
    assert forwarded.json()["links"]["self"] == "https://rancher.example.com:8443/v3/clusters"
    via_host = httpx.get(f"{base}/v3/clusters", timeout=10, headers={
        **headers, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example.com"})
    assert via_host.json()["links"]["self"] == "https://public.example.com/v3/clusters"
    with api(shared_corral_server, token) as client:
        direct = client.get("/v3/clusters").json()
    assert direct["links"]["self"] == f"{shared_corral_server.https_url}/v3/clusters"


def test_cluster_crud_with_registration_token(shared_corral_server: CorralServer) -> None:
    """A new cluster gets a default registration token whose command uses the server URL,
    the air-gap registry and the CA checksum; deleting the cluster removes its tokens."""
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        registry = client.put("/v3/settings/system-default-registry",
                              json={"value": "registry.example.com:5000"})
        assert registry.status_code == 200
        name = unique("prod")
        created = client.post("/v3/clusters", json={"name": name, "labels": {"env": "e2e"}})
        assert created.status_code == 201
        cluster = created.json()
        assert cluster["id"].startswith("c-") and cluster["state"] == "pending"
        tokens = client.get(cluster["links"]["clusterRegistrationTokens"]).json()["data"]
        assert [t["id"] for t in tokens] == [f"{cluster['id']}:default-token"]
        command = tokens[0]["command"]
        ca = shared_corral_server.ca_path.read_text()
        settings_ca = client.get("/v3/settings/cacerts").json()["value"]
        assert settings_ca.strip() == ca.strip()
        assert f"--server {SHARED_SERVER_URL}" in command
        assert f"--token {tokens[0]['token']}" in command
        assert "registry.example.com:5000/rancher/rancher-agent:" in command
        assert f"--ca-checksum {hashlib.sha256(settings_ca.encode()).hexdigest()}" in command
        extra = client.post("/v3/clusterregistrationtokens", json={"clusterId": cluster["id"]})
        assert extra.status_code == 201 and extra.json()["token"] != tokens[0]["token"]
        renamed = client.put(cluster["links"]["update"], json={"description": "main"})
        assert renamed.json()["description"] == "main"
        assert renamed.json()["labels"] == {"env": "e2e"}
        assert client.delete(cluster["links"]["remove"]).status_code == 200
        assert client.get(cluster["links"]["self"]).status_code == 404
        left = client.get(f"/v3/clusterregistrationtokens?clusterId={cluster['id']}").json()
        assert left["data"] == []
        client.put("/v3/settings/system-default-registry", json={"value": ""})


def test_bad_cluster_bodies(shared_corral_server: CorralServer) -> None:
    """Invalid names and tokens for unknown clusters are 422 naming the field."""
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        bad = client.post("/v3/clusters", json={"name": "Not A DNS Name"})
        assert bad.status_code == 422 and "'name'" in bad.json()["message"]
        orphan = client.post("/v3/clusterregistrationtokens", json={"clusterId": "c-none"})
        assert orphan.status_code == 422 and "clusterId" in orphan.json()["message"]


def test_nodes_lists_the_local_node_and_its_health(shared_corral_server: CorralServer) -> None:
    """/v3/nodes is read-only and lists this host with its health checks."""
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        nodes = client.get("/v3/nodes").json()
        assert nodes["pagination"]["total"] == 1
        node = nodes["data"][0]
        assert node["hostname"] and "127.0.0.1" in node["addresses"]
        assert node["health"]["healthy"] is True and node["state"] == "active"
        assert {c["name"] for c in node["health"]["checks"]} == {"store", "disk", "memory"}
        assert node["roles"] == ["etcd", "controlplane", "worker"]
        assert client.get(node["links"]["self"]).json()["id"] == node["id"]
        assert client.delete(node["links"]["self"]).status_code == 405
        assert client.get("/v3/nodes/m-unknown").status_code == 404


def test_openapi_and_root(shared_corral_server: CorralServer) -> None:
    """/v3/openapi.json describes the API without login; /v3 links every collection."""
    with api(shared_corral_server) as client:
        document = client.get("/v3/openapi.json").json()
        assert document["openapi"].startswith("3.")
        assert {"/v3/users", "/v3/subscribe", "/v3/shell",
                "/v3-public/localProviders/local"} <= set(document["paths"])
    with api(shared_corral_server, admin_token(shared_corral_server)) as client:
        root = client.get("/v3").json()
    assert root["links"]["users"] == f"{shared_corral_server.https_url}/v3/users"
    assert root["links"]["subscribe"].startswith("wss://")


def test_links_through_real_rancher_example_nginx(shared_corral_server: CorralServer,
                                                  rancher_example_nginx: Any) -> None:
    """Through NGINX with Rancher's example config (Host $host, X-Forwarded-Port $server_port) the
    links name the URL the client used, port included."""
    nginx = rancher_example_nginx(shared_corral_server)
    token = admin_token(shared_corral_server)
    response = curl(*nginx.resolve(nginx.tls_port), "--cacert", str(nginx.ca),
                    "-H", f"Authorization: Bearer {token}",
                    f"https://{FQDN}:{nginx.tls_port}/v3/clusters")
    assert response.status == 200, response.body
    assert json.loads(response.body)["links"]["self"] == (
        f"https://{FQDN}:{nginx.tls_port}/v3/clusters"
    )


def test_links_and_cookie_login_through_corral_lb(shared_corral_server: CorralServer,
                                           tmp_path: Path) -> None:
    """Through `corral lb` (Host with port, X-Forwarded-Proto https) links name the lb's URL,
    and the login cookie path works end to end."""
    with (
        running_corral_lb(tmp_path, shared_corral_server.http_port) as (port, certs),
        httpx.Client(verify=certs.client_context(), timeout=10) as client,
    ):
        base = f"https://localhost:{port}"
        login_response = client.post(f"{base}/v3-public/localProviders/local?action=login",
                                     json={"username": "admin", "responseType": "cookie",
                                           "password": shared_corral_server.admin_password})
        assert login_response.status_code == 200
        assert "R_SESS" in client.cookies
        clusters = client.get(f"{base}/v3/clusters")
    assert clusters.status_code == 200
    assert clusters.json()["links"]["self"] == f"https://localhost:{port}/v3/clusters"


def test_restart_keeps_users_tokens_and_settings(start_corral_server: Any,
                                                 tmp_path: Path) -> None:
    """After a restart on the same data directory, users, tokens and settings are all back."""
    data_dir, tls_dir = tmp_path / "keep-data", tmp_path / "keep-tls"
    first: CorralServer = start_corral_server(data_dir=data_dir, tls_dir=tls_dir)
    admin = admin_token(first)
    user, user_token = create_user(first, admin)
    with api(first, admin) as client:
        assert client.put("/v3/settings/ui-pl", json={"value": "Kept"}).status_code == 200
    first.stop()
    second: CorralServer = start_corral_server(data_dir=data_dir, tls_dir=tls_dir)
    assert "bootstrap password" not in second.output()
    with api(second, admin) as client:
        assert client.get("/v3/settings/ui-pl").json()["value"] == "Kept"
        assert client.get(f"/v3/users/{user['id']}").json()["username"] == user["username"]
    with api(second, user_token) as client:
        assert client.get("/v3/users?me=true").json()["data"][0]["id"] == user["id"]


def test_generated_bootstrap_password_must_be_changed(start_corral_server: Any) -> None:
    """Without CORRAL_BOOTSTRAP_PASSWORD the printed random password logs in as an admin who
    must change it."""
    server: CorralServer = start_corral_server(env={"CORRAL_BOOTSTRAP_PASSWORD": ""})
    found = re.search(r"bootstrap password for admin: (\S+)", server.output())
    assert found, server.output()
    session = login(server, "admin", found.group(1))
    with api(server, session["token"]) as client:
        me = client.get("/v3/users?me=true").json()["data"][0]
        assert me["mustChangePassword"] is True and me["admin"] is True
        changed = client.post("/v3/users?action=changepassword", json={
            "currentPassword": found.group(1), "newPassword": "a-new-admin-password"})
        assert changed.json()["mustChangePassword"] is False
