"""What a cookie UI needs, checked from real clients: the cookies' attributes, CSRF (Rancher's
`CSRF` cookie echoed in `X-API-CSRF`; token clients unaffected), both WebSockets refusing a
cross-site Origin, a cross-site page getting nothing done, and no token in a URL or a log."""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import BrowserContext, Page
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.e2e.server.core_harness import FQDN
from tests.e2e.ui.harness import UiSystem
from tests.support.net import wait_until

EVIL = "https://evil.example"
SHELL_PROTOCOL = "base64.channel.k8s.io"


def session_cookie(context: BrowserContext) -> str:
    """The admin's R_SESS value (HttpOnly: only the browser's own store shows it)."""
    return next(c["value"] for c in context.cookies() if c["name"] == "R_SESS")


@contextmanager
def websocket(ui: UiSystem, path: str, *, origin: str, cookie: str) -> Iterator[ClientConnection]:
    """A WebSocket through the lb to FQDN with the given Origin and session cookie."""
    context = ssl.create_default_context(cafile=str(ui.lb.ca))
    sock = socket.create_connection(("127.0.0.1", ui.lb.tls_port), timeout=10)
    protocols = [Subprotocol(SHELL_PROTOCOL)] if path == "/v3/shell" else None
    with connect(f"wss://{FQDN}:{ui.lb.tls_port}{path}", sock=sock, ssl=context,
                 server_hostname=FQDN, origin=Origin(origin),
                 additional_headers={"Cookie": f"R_SESS={cookie}"},
                 subprotocols=protocols, open_timeout=10) as conn:
        yield conn


def fetch_status(page: Page, method: str, path: str, headers: dict[str, str]) -> dict[str, object]:
    """A fetch from the page (its cookies): the status and the error code."""
    answer = page.evaluate("""async ([method, path, headers]) => {
        const response = await fetch(path, {method, body: JSON.stringify({name: 'csrf-probe'}),
            headers: {'Content-Type': 'application/json', ...headers}});
        const body = await response.json();
        return {status: response.status, code: body.code || '', id: body.id || ''};
    }""", [method, path, headers])
    return dict(answer)


def test_cookies_are_secure_httponly_and_samesite(ui: UiSystem, admin_page: Page,
                                                  admin_context: BrowserContext) -> None:
    """R_SESS is Secure, HttpOnly, SameSite=Lax; the CSRF cookie is Secure, SameSite=Strict and
    readable by the page (that is how it is echoed); the page cannot read R_SESS."""
    cookies = {c["name"]: c for c in admin_context.cookies()}
    session, csrf = cookies["R_SESS"], cookies["CSRF"]
    assert (session["secure"], session["httpOnly"], session["sameSite"]) == (True, True, "Lax")
    assert (csrf["secure"], csrf["httpOnly"], csrf["sameSite"]) == (True, False, "Strict")
    visible = admin_page.evaluate("() => document.cookie")
    assert "R_SESS" not in visible and f"CSRF={csrf['value']}" in visible


def test_cookie_writes_need_the_csrf_header_token_clients_do_not(ui: UiSystem,
                                                                 admin_page: Page) -> None:
    """From the logged-in page a POST without X-API-CSRF, or with a wrong one, is refused with
    422 InvalidCSRFToken; with the cookie's value it works; a Bearer client needs no header."""
    page = admin_page
    for headers in ({}, {"X-API-CSRF": "not-the-token"}):
        refused = fetch_status(page, "POST", "/v3/clusters", headers)
        assert refused == {"status": 422, "code": "InvalidCSRFToken", "id": ""}, headers
    token = page.evaluate("() => document.cookie.match(/CSRF=([^;]+)/)[1]")
    made = fetch_status(page, "POST", "/v3/clusters", {"X-API-CSRF": token})
    assert made["status"] == 201
    with ui.http(headers={"Authorization": f"Bearer {ui.admin_token()}"}) as client:
        assert client.delete(f"/v3/clusters/{made['id']}").status_code == 200
        created = client.post("/v3/clusters", json={"name": "by-bearer"})
        assert created.status_code == 201
        assert client.delete(f"/v3/clusters/{created.json()['id']}").status_code == 200


@pytest.mark.parametrize("path", ["/v3/subscribe", "/v3/shell"])
def test_websockets_refuse_a_cross_site_origin(ui: UiSystem, admin_context: BrowserContext,
                                               path: str) -> None:
    """With the admin's cookie, a cross-site Origin is refused (403 naming the Origin) and the
    UI's own origin is accepted."""
    cookie = session_cookie(admin_context)
    with pytest.raises(InvalidStatus) as refused, websocket(ui, path, origin=EVIL, cookie=cookie):
        pass
    assert refused.value.response.status_code == 403
    assert b"Origin" in refused.value.response.body
    with websocket(ui, path, origin=ui.base_url, cookie=cookie) as conn:
        assert conn.recv(timeout=10)  # a ping on /v3/subscribe, the prompt on /v3/shell


def test_a_cross_site_page_gets_nothing_done(ui: UiSystem, admin_context: BrowserContext) -> None:
    """A page on another site, in the logged-in admin's browser, can neither create a cluster
    (the session cookie is not sent cross-site, and there is no CSRF header) nor open a
    WebSocket with the admin's session."""
    # The browser's own local-network guard would stop the requests before they reach the
    # server (the test's FQDN is 127.0.0.1): allow them, so the server's defences are tested.
    admin_context.grant_permissions(["local-network-access"], origin=EVIL)
    page = admin_context.new_page()
    page.route(f"{EVIL}/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><title>evil</title>"))
    page.goto(f"{EVIL}/")
    seen = len((ui.base_dir / "audit" / "corral-api-audit.log").read_text().splitlines())
    target = ui.base_url
    outcome = page.evaluate("""async (target) => {
        await fetch(target + '/v3/clusters', {method: 'POST', mode: 'no-cors',
            credentials: 'include', headers: {'Content-Type': 'text/plain'},
            body: JSON.stringify({name: 'evil-cluster'})});
        const opened = await new Promise((resolve) => {
            const ws = new WebSocket(target.replace('https', 'wss') + '/v3/subscribe');
            ws.onopen = () => { ws.close(); resolve(true); };
            ws.onerror = () => resolve(false);
        });
        return {opened};
    }""", target)
    assert outcome == {"opened": False}

    def refused_here() -> set[str]:
        path = ui.base_dir / "audit" / "corral-api-audit.log"
        records = [json.loads(line) for line in path.read_text().splitlines()[seen:] if line]
        return {r["requestURI"] for r in records
                if r["user"]["name"] == "system:anonymous" and r["responseCode"] in (401, 403)
                and r.get("requestHeader", {}).get("Origin") == [EVIL]}

    # both reached the server, without the session: the cookie is not sent cross-site
    wait_until(lambda: {"/v3/clusters", "/v3/subscribe"} <= refused_here(), timeout=10,
               what="the refused cross-site requests in the audit log")
    with ui.http(headers={"Authorization": f"Bearer {ui.admin_token()}"}) as client:
        names = [c["name"] for c in client.get("/v3/clusters").json()["data"]]
    assert "evil-cluster" not in names
    page.close()


def test_no_token_in_urls_console_or_logs(ui: UiSystem, admin_context: BrowserContext) -> None:
    """No token secret seen during the tests (API keys, logins, the admin's session) is in a
    URL the browser requested, a console line, the server's or the lb's output, or the audit
    log."""
    secrets = [*ui.secrets, session_cookie(admin_context).partition(":")[2]]
    assert secrets and all(len(secret) >= 32 for secret in secrets)
    assert len(ui.request_urls) > 50
    audit = (ui.base_dir / "audit" / "corral-api-audit.log").read_text()
    places = {"request URLs": "\n".join(ui.request_urls), "console": "\n".join(ui.console),
              "process output": ui.outputs(), "audit log": audit}
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a token secret is in the {where}"
    full_tokens = [url for url in ui.request_urls if re.search(r"token-[a-z0-9]+:", url)]
    assert not full_tokens, full_tokens
    elsewhere = [url for url in ui.request_urls if not url.startswith((ui.base_url, EVIL))]
    assert not elsewhere, elsewhere

