"""The UI at https://FQDN through corral lb over HTTP/2: its assets come from the package, the
login refuses without saying whether the user exists, the first login makes the bootstrap admin
change the password, and logout ends the session. (Runs first: it does the first login.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from playwright.sync_api import BrowserContext, expect

from tests.e2e.ui.harness import NEW_ADMIN_PASSWORD, UiSystem

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "src" / "corral" / "server" / "ui" / "static" / "vendor" / "manifest.json"


def test_assets_come_from_the_package_over_http2(ui: UiSystem) -> None:
    """Every request of the login page goes to the server's own origin over HTTP/2, under a
    CSP without inline scripts; the served vendor files are the pinned npm packages' files."""
    context = ui.new_context()
    page = context.new_page()
    first = len(ui.request_urls)
    response = page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.url == f"{ui.base_url}/login"
    assert response is not None
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
    urls = ui.request_urls[first:]
    assert any(url.endswith("/static/vendor/lit-html/lit-html.js") for url in urls)
    assert all(url.startswith(f"{ui.base_url}/") for url in urls), urls
    protocols = page.evaluate(
        "() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType"
        "('resource')).map(entry => [entry.name, entry.nextHopProtocol])")
    assert protocols and all(protocol == "h2" for _, protocol in protocols), protocols
    ui.shot(page, "login")
    manifest = json.loads(MANIFEST.read_text())
    with ui.http() as client:
        for package in manifest["packages"]:
            for entry in package["files"]:
                served = client.get(f"/static/vendor/{entry['to']}")
                assert served.status_code == 200 and served.http_version == "HTTP/2"
                assert hashlib.sha256(served.content).hexdigest() == entry["sha256"], entry
    check = subprocess.run([str(ROOT / "scripts" / "ui-vendor"), "--check"], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    context.close()


def test_wrong_password_and_unknown_user_get_the_same_message(ui: UiSystem) -> None:
    """A wrong password and a user that does not exist get the same message, in place."""
    context = ui.new_context()
    page = context.new_page()
    messages = []
    for username, password in (("admin", "not-the-password"), ("nobody-here", "whatever-it-is")):
        page.goto("/login")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        error = page.locator("#login-error")
        expect(error).to_be_visible()
        messages.append(error.inner_text())
        assert page.url.endswith("/login")
    assert messages == ["Invalid username or password."] * 2
    ui.shot(page, "login-refused")
    context.close()


def test_first_login_forces_a_password_change(ui: UiSystem, admin_context: BrowserContext) -> None:
    """The bootstrap admin's first login leads to the password change, every other page leads
    back there until it is done, then the dashboard shows the node and the CA (copy and
    download give the server's cacerts)."""
    page = admin_context.new_page()
    ui.login(page, "admin", ui.bootstrap_password)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert page.url.endswith("/password")
    page.goto("/users")
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert page.url.endswith("/password")
    ui.shot(page, "password-change")
    page.get_by_label("Current password").fill(ui.bootstrap_password)
    page.get_by_label("New password", exact=True).fill(NEW_ADMIN_PASSWORD)
    page.get_by_label("New password again").fill(NEW_ADMIN_PASSWORD + "-typo")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("The two new passwords differ.")
    page.get_by_label("New password again").fill(NEW_ADMIN_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    ui.admin_password = NEW_ADMIN_PASSWORD
    assert page.url == f"{ui.base_url}/"
    node = page.locator("#nodes tbody tr").first
    expect(node).to_have_attribute("data-state", "active")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    expect(page.locator("#ca-fingerprint")).to_contain_text(":")
    ui.shot(page, "dashboard")
    with ui.http() as client:
        pem = client.get("/cacerts").text
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    page.get_by_role("button", name="Copy cacerts").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == pem
    with page.expect_download() as download:
        page.get_by_role("link", name="Download cacerts.pem").click()
    assert download.value.suggested_filename == "cacerts.pem"
    assert Path(download.value.path()).read_text() == pem
    with ui.http() as client:
        me = client.get("/v3/users?me=true",
                        headers={"Authorization": f"Bearer {ui.admin_token()}"}).json()["data"][0]
    assert me["mustChangePassword"] is False
    page.close()


def test_logout_ends_the_session(ui: UiSystem) -> None:
    """Log out clears the session: the login page says so, the API refuses the old cookie's
    context, and back does not bring a page of the session back."""
    context = ui.new_context()
    page = context.new_page()
    ui.login(page, "admin", ui.ensure_admin_password())
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.goto("/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("You are logged out.")
    assert not [c for c in context.cookies() if c["name"] == "R_SESS"]
    assert page.evaluate("async () => (await fetch('/v3/users?me=true')).status") == 401
    page.go_back()  # to a page of the session, which now asks for a login again
    page.wait_for_function("() => location.pathname === '/login'")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("heading", name="Settings")).to_have_count(0)
    context.close()
