"""Login, token and cookie flows against a real `corral server`: Bearer / Basic / R_SESS,
401s, no user enumeration, TTL expiry, logout, admin-only checks, password changes."""

from __future__ import annotations

import base64

import httpx

from tests.e2e.server.core_harness import CorralServer
from tests.e2e.server.test_api_support import (
    LOGIN_PATH,
    USER_PASSWORD,
    admin_token,
    api,
    create_user,
    login,
)
from tests.support.net import wait_until


def test_login_returns_a_token_once(shared_corral_server: CorralServer) -> None:
    """Login answers 201 with `token-xxxxx:<secret>`; reading the token later never shows it."""
    body = login(shared_corral_server, description="e2e")
    token_id, _, secret = body["token"].partition(":")
    assert body["type"] == "token" and body["id"] == token_id
    assert token_id.startswith("token-") and len(secret) >= 43
    assert body["current"] is True and body["expiresAt"]
    with api(shared_corral_server, body["token"]) as client:
        again = client.get(f"/v3/tokens/{token_id}").json()
    assert "token" not in again and again["description"] == "e2e"
    assert secret not in str(again)


def test_bearer_basic_and_cookie_all_authenticate(shared_corral_server: CorralServer) -> None:
    """The same token works as Bearer, as Basic (Rancher's form) and as the R_SESS cookie."""
    token = admin_token(shared_corral_server)
    basic = "Basic " + base64.b64encode(token.encode()).decode()
    with api(shared_corral_server) as client:
        for headers in (
            {"Authorization": f"Bearer {token}"},
            {"Authorization": basic},
            {"Cookie": f"R_SESS={token}"},
        ):
            response = client.get("/v3/users?me=true", headers=headers)
            assert response.status_code == 200, (headers, response.text)
            assert response.json()["data"][0]["username"] == "admin"


def test_requests_without_valid_credentials_are_401(shared_corral_server: CorralServer) -> None:
    """No token, a wrong secret and garbage are all 401 in the error envelope."""
    token_id = admin_token(shared_corral_server).partition(":")[0]
    with api(shared_corral_server) as client:
        for headers in (
            {},
            {"Authorization": f"Bearer {token_id}:wrong-secret"},
            {"Authorization": "Bearer garbage"},
            {"Cookie": "R_SESS=token-zzzzz:nothing"},
        ):
            response = client.get("/v3/clusters", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["type"] == "error"
            assert response.json()["code"] == "Unauthorized"


def test_wrong_password_and_unknown_user_look_the_same(shared_corral_server: CorralServer) -> None:
    """A wrong password and an unknown user get the same 401 and message."""
    with api(shared_corral_server) as client:
        wrong = client.post(LOGIN_PATH, json={"username": "admin", "password": "not-it-at-all"})
        unknown = client.post(LOGIN_PATH, json={"username": "nobody-xyz", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["message"] == "invalid username or password"


def test_cookie_login_sets_a_secure_session_cookie(shared_corral_server: CorralServer) -> None:
    """`responseType: cookie` answers 200, sets R_SESS (Secure, HttpOnly, SameSite=Lax,
    Path=/) and puts no secret in the body; the cookie then authenticates."""
    with api(shared_corral_server) as client:
        response = client.post(LOGIN_PATH, json={
            "username": "admin", "password": shared_corral_server.admin_password,
            "responseType": "cookie",
        })
        assert response.status_code == 200
        set_cookie = response.headers["set-cookie"]
        value = set_cookie.split(";")[0].removeprefix("R_SESS=")
        attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= attributes
        assert "token" not in response.json()
        assert value.partition(":")[2] not in response.text
        me = client.get("/v3/users?me=true", headers={"Cookie": f"R_SESS={value}"})
    assert me.status_code == 200


def test_token_ttl_expires(shared_corral_server: CorralServer) -> None:
    """A token with a short TTL works, then is refused with 401 once it expires."""
    token = login(shared_corral_server, ttl=1500)["token"]
    with api(shared_corral_server, token) as client:
        assert client.get("/v3/clusters").status_code == 200
        wait_until(lambda: client.get("/v3/clusters").status_code == 401, timeout=15,
                   what="token to expire")
        assert "expired" in client.get("/v3/clusters").json()["message"]


def test_logout_action_deletes_token_and_clears_cookie(shared_corral_server: CorralServer) -> None:
    """`POST /v3/tokens?action=logout` deletes the token in use and expires R_SESS."""
    token = admin_token(shared_corral_server)
    with api(shared_corral_server) as client:
        response = client.post("/v3/tokens?action=logout", headers={"Cookie": f"R_SESS={token}"})
        assert response.status_code == 200
        assert response.headers["set-cookie"].startswith('R_SESS=""') or (
            "max-age=0" in response.headers["set-cookie"].lower()
        )
        after = client.get("/v3/clusters", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401


def test_deleting_a_token_logs_it_out(shared_corral_server: CorralServer) -> None:
    """DELETE /v3/tokens/<id> revokes it; other tokens of the user keep working."""
    doomed = admin_token(shared_corral_server)
    keeper = admin_token(shared_corral_server)
    with api(shared_corral_server, keeper) as client:
        assert client.delete(f"/v3/tokens/{doomed.partition(':')[0]}").status_code == 200
        assert client.get("/v3/clusters").status_code == 200
        mine = client.get("/v3/tokens").json()
    with api(shared_corral_server, doomed) as client:
        assert client.get("/v3/clusters").status_code == 401
    ids = {t["id"] for t in mine["data"]}
    assert keeper.partition(":")[0] in ids and doomed.partition(":")[0] not in ids


def test_api_keys_are_listed_only_to_their_owner(shared_corral_server: CorralServer) -> None:
    """POST /v3/tokens makes an API key shown once; users see only their own tokens."""
    admin = admin_token(shared_corral_server)
    _, user_token = create_user(shared_corral_server, admin)
    with api(shared_corral_server, user_token) as client:
        created = client.post("/v3/tokens", json={"description": "ci key"})
        assert created.status_code == 201
        key = created.json()["token"]
        assert created.json()["isDerived"] is True
        listed = client.get("/v3/tokens").json()["data"]
        assert client.get(f"/v3/tokens/{admin.partition(':')[0]}").status_code == 404
    assert all(t["userId"] == created.json()["userId"] for t in listed)
    with api(shared_corral_server, key) as client:
        assert client.get("/v3/users?me=true").status_code == 200


def test_admin_only_operations_are_403_for_users(shared_corral_server: CorralServer) -> None:
    """A non-admin may read themselves but not list/create users, create clusters, change
    settings or open the shell."""
    admin = admin_token(shared_corral_server)
    user, token = create_user(shared_corral_server, admin)
    with api(shared_corral_server, token) as client:
        assert client.get("/v3/users").status_code == 403
        assert client.get("/v3/users").json()["code"] == "Forbidden"
        assert client.get(f"/v3/users/{user['id']}").status_code == 200
        assert client.post("/v3/users", json={"username": "x", "password": "y" * 12}).status_code \
            == 403
        assert client.post("/v3/clusters", json={"name": "nope"}).status_code == 403
        assert client.put("/v3/settings/ui-pl", json={"value": "x"}).status_code == 403
        assert client.get("/v3/clusterregistrationtokens").status_code == 403
        assert client.get("/v3/clusters").status_code == 200


def test_change_own_password(shared_corral_server: CorralServer) -> None:
    """changepassword needs the current password; afterwards only the new one logs in."""
    admin = admin_token(shared_corral_server)
    user, token = create_user(shared_corral_server, admin, mustChangePassword=True)
    assert user["mustChangePassword"] is True
    new_password = "brand-new-password-1"
    with api(shared_corral_server, token) as client:
        wrong = client.post("/v3/users?action=changepassword", json={
            "currentPassword": "not-current-pw", "newPassword": new_password})
        assert wrong.status_code == 422
        short = client.post("/v3/users?action=changepassword", json={
            "currentPassword": USER_PASSWORD, "newPassword": "short"})
        assert short.status_code == 422 and "newPassword" in short.json()["message"]
        done = client.post("/v3/users?action=changepassword", json={
            "currentPassword": USER_PASSWORD, "newPassword": new_password})
        assert done.status_code == 200 and done.json()["mustChangePassword"] is False
        old = client.post(LOGIN_PATH, json={"username": user["username"],
                                            "password": USER_PASSWORD})
    assert old.status_code == 401
    assert login(shared_corral_server, user["username"], new_password)["token"]


def test_disabling_a_user_cuts_its_tokens(shared_corral_server: CorralServer) -> None:
    """An admin disabling a user makes its token 401 at once."""
    admin = admin_token(shared_corral_server)
    user, token = create_user(shared_corral_server, admin)
    with api(shared_corral_server, admin) as client:
        assert client.put(f"/v3/users/{user['id']}", json={"enabled": False}).status_code == 200
    with api(shared_corral_server, token) as client:
        assert client.get("/v3/clusters").status_code == 401


def test_plain_http_login_through_forwarded_proto(shared_corral_server: CorralServer) -> None:
    """Behind a proxy (X-Forwarded-Proto: https on the HTTP port) login works as on HTTPS."""
    response = httpx.post(
        f"{shared_corral_server.http_url}{LOGIN_PATH}",
        json={"username": "admin", "password": shared_corral_server.admin_password},
        headers={"X-Forwarded-Proto": "https", "Host": "corral.test"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.json()["links"]["self"].startswith("https://corral.test/v3/tokens/")
