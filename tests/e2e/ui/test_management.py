"""The management pages in a real browser: users (and what a non-admin is refused), API keys
(the secret shown once, then used with httpx), settings, clusters with their registration
command, the audit view; the pages at a phone's width and by keyboard."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.ui.harness import PHONE, UiSystem

ALICE_PASSWORD = "alice-first-password-1"
ALICE_NEW_PASSWORD = "alice-second-password-2"


def no_horizontal_scroll(page: Page) -> bool:
    """The page fits the viewport's width (tables scroll inside their own box)."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def go(page: Page, name: str) -> None:
    """Follow a link of the main navigation."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def test_users_page_manages_users_and_a_user_is_refused_admin_pages(ui: UiSystem,
                                                                      admin_page: Page) -> None:
    """Admin creates alice; alice (another browser context) sees no admin pages and is refused
    them by the API; admin makes her admin and back, sets her password, disables her."""
    page = admin_page
    go(page, "Users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    form = page.locator("#create-user")
    form.get_by_label("Username").fill("alice")
    form.get_by_label("Password", exact=True).fill(ALICE_PASSWORD)
    form.get_by_label("Display name").fill("Alice Example")
    form.get_by_label("Must change password at first login").uncheck()
    form.get_by_role("button", name="Create user").click()
    alice_row = page.locator('#users tr[data-user="alice"]')
    expect(alice_row).to_contain_text("Alice Example")
    expect(page.get_by_role("status").first).to_contain_text("User alice created.")
    ui.shot(page, "users")

    alice = ui.new_context().new_page()
    ui.login(alice, "alice", ALICE_PASSWORD)
    expect(alice.get_by_role("heading", name="Dashboard")).to_be_visible()
    nav = alice.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Clusters")).to_be_visible()
    for admin_only in ("Users", "Shell", "Audit log"):
        expect(nav.get_by_role("link", name=admin_only)).to_have_count(0)
    alice.goto("/users")
    refusal = alice.locator('[data-status="403"]')
    expect(refusal).to_contain_text("needs the admin role")
    ui.shot(alice, "users-refused")
    alice.goto("/shell")
    expect(alice.locator('[data-status="403"]')).to_contain_text("admins only")
    status = alice.evaluate("""async () => (await fetch('/v3/users', {method: 'POST',
        headers: {'Content-Type': 'application/json',
                  'X-API-CSRF': document.cookie.match(/CSRF=([^;]+)/)[1]},
        body: JSON.stringify({username: 'mallory', password: 'mallory-password-1'})})).status""")
    assert status == 403

    alice_row.get_by_role("button", name="Make admin").click()
    expect(alice_row).to_contain_text("admin")
    expect(alice_row.get_by_role("button", name="Remove admin")).to_be_visible()
    alice_row.get_by_role("button", name="Remove admin").click()
    expect(alice_row.get_by_role("button", name="Make admin")).to_be_visible()
    alice_row.get_by_role("button", name="Set password").click()
    page.get_by_label("New password for alice").fill(ALICE_NEW_PASSWORD)
    page.get_by_role("button", name="Set password", exact=True).last.click()
    expect(page.get_by_role("status").first).to_contain_text("Password set: alice.")
    alice.context.clear_cookies()
    ui.login(alice, "alice", ALICE_NEW_PASSWORD)
    expect(alice.get_by_role("heading", name="Dashboard")).to_be_visible()

    alice_row.get_by_role("button", name="Disable").click()
    expect(alice_row).to_contain_text("disabled")
    alice.context.clear_cookies()
    alice.goto("/login")
    alice.get_by_label("Username").fill("alice")
    alice.get_by_label("Password").fill(ALICE_NEW_PASSWORD)
    alice.get_by_role("button", name="Log in").click()
    expect(alice.locator("#login-error")).to_have_text("Invalid username or password.")
    alice.context.close()


def test_api_key_secret_is_shown_once_and_works_with_httpx(ui: UiSystem, admin_page: Page) -> None:
    """A new API key's secret is shown once (copy button included); httpx authenticates with it
    as Bearer and as Basic; after the page is left it is nowhere; deleting it revokes it."""
    page = admin_page
    go(page, "API keys")
    form = page.locator("#create-key")
    form.get_by_label("Description").fill("ci deploy job")
    form.get_by_label("Expires after").select_option(label="1 day")
    form.get_by_role("button", name="Create API key").click()
    token = page.locator("#new-key-token").inner_text()
    access, _, secret = token.partition(":")
    ui.secrets.append(secret)
    assert access.startswith("token-") and len(secret) >= 32
    ui.shot(page, "api-key-created")
    page.locator("#new-key").get_by_role("button", name="Copy").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == token

    with ui.http() as client:
        bearer = client.get("/v3/clusters", headers={"Authorization": f"Bearer {token}"})
        basic = client.get("/v3/clusters", auth=httpx.BasicAuth(access, secret))
    assert bearer.status_code == 200 and basic.status_code == 200

    page.get_by_role("button", name="I have copied it").click()
    expect(page.locator("#new-key")).to_have_count(0)
    page.reload()
    row = page.locator(f'#tokens tr[data-token="{access}"]')
    expect(row).to_contain_text("ci deploy job")
    assert secret not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    with ui.http() as client:
        revoked = client.get("/v3/clusters", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401


def test_settings_edit_server_url_and_mark_read_only_ones(ui: UiSystem, admin_page: Page) -> None:
    """Read-only settings are marked; a bad server-url is refused in place with the server's
    reason; a good one is saved and shown on the dashboard."""
    page = admin_page
    go(page, "Settings")
    for read_only in ("cacerts", "server-version"):
        expect(page.locator(f'tr[data-setting="{read_only}"]')).to_contain_text("read-only")
    row = page.locator('tr[data-setting="server-url"]')
    expect(row).not_to_contain_text("read-only")
    field = row.get_by_role("textbox")
    field.fill("http://plain.example.com")
    row.get_by_role("button", name="Save").click()
    expect(row.get_by_role("alert")).to_contain_text("https")
    field.fill(ui.base_url)
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved server-url.")
    expect(row.get_by_role("alert")).to_have_count(0)
    ui.shot(page, "settings", full_page=True)
    with ui.http() as client:
        stored = client.get("/v3/settings/server-url",
                            headers={"Authorization": f"Bearer {ui.admin_token()}"}).json()
    assert stored["value"] == ui.base_url
    go(page, "Dashboard")
    expect(page.locator("#server-url")).to_contain_text(ui.base_url)


def test_cluster_page_shows_the_registration_command(ui: UiSystem, admin_page: Page) -> None:
    """Creating a cluster leads to its page with the agent command (server URL, token, CA
    checksum, roles); back and forward move between the list and the cluster."""
    page = admin_page
    checksum = page.locator("#ca-checksum").inner_text().strip()
    go(page, "Clusters")
    form = page.locator("#create-cluster")
    form.get_by_label("Name").fill("prod-east")
    form.get_by_label("Description").fill("the east region")
    form.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("heading", name="Cluster prod-east")).to_be_visible()
    command = page.locator(".node-command").first.inner_text()
    assert command.startswith("sudo docker run ")
    assert "--server https://corral.test:" in command and " --token " in command
    assert f"--ca-checksum {checksum}" in command
    assert command.endswith("--etcd --controlplane --worker")
    ui.shot(page, "cluster", full_page=True)
    cluster_url = page.url
    page.go_back()
    expect(page.locator('#clusters tr[data-cluster="prod-east"]')).to_be_visible()
    page.go_forward()
    expect(page.get_by_role("heading", name="Cluster prod-east")).to_be_visible()
    assert page.url == cluster_url
    page.reload()
    expect(page.get_by_role("heading", name="Cluster prod-east")).to_be_visible()


def test_audit_view_filters_redacted_records(ui: UiSystem, admin_page: Page) -> None:
    """The audit view lists the requests the UI made, filtered by user, method and status (in
    the URL, so back returns to the previous filter), with secrets redacted as in the file."""
    page = admin_page
    page.goto("/audit?user=admin&method=POST")
    table = page.locator("#audit")
    expect(table).to_contain_text("/v3/users")
    methods = page.locator("#audit tbody tr td:nth-child(3)").all_inner_texts()
    assert methods and set(methods) == {"POST"}
    created = page.locator("#audit tbody tr").filter(
        has=page.locator("summary", has_text=re.compile(r"^/v3/users$"))).first
    created.locator("summary").click()
    detail = created.locator("pre").inner_text()
    assert '"password": "[redacted]"' in detail
    assert ALICE_PASSWORD not in page.content()
    ui.shot(page, "audit")
    filters = page.locator("#audit-filters")
    filters.get_by_label("Method").select_option("")
    filters.get_by_label("Status").fill("4xx")
    filters.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{ui.base_url}/audit?user=admin&status=4xx")
    expect(page.locator("#audit tbody tr").first).to_be_visible()
    codes = page.locator("#audit tbody tr td:nth-child(5)").all_inner_texts()
    assert codes and all(code.startswith("4") for code in codes), codes
    page.go_back()
    expect(page.get_by_label("Method")).to_have_value("POST")
    assert page.url.endswith("/audit?user=admin&method=POST")


def test_phone_width_and_keyboard_only(ui: UiSystem) -> None:
    """At a phone's width the pages fit without sideways scrolling and the menu folds; login,
    the menu and a page change all work with the keyboard alone."""
    page = ui.new_context(viewport=PHONE).new_page()
    page.goto("/login")
    expect(page.locator("#login-username")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(ui.ensure_admin_password())
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("#nodes tbody tr").first).to_have_attribute("data-state", "active")
    assert no_horizontal_scroll(page)
    ui.shot(page, "phone-dashboard", full_page=True)
    nav_link = page.get_by_role("navigation", name="Main").get_by_role("link", name="Clusters")
    expect(nav_link).to_be_hidden()
    menu = page.get_by_role("button", name="Menu")
    for _ in range(6):  # focus is on the page's heading: back up to the menu button
        page.keyboard.press("Shift+Tab")
        if menu.evaluate("element => element === document.activeElement"):
            break
    expect(menu).to_be_focused()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    ui.shot(page, "phone-menu")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(nav_link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Clusters")).to_be_visible()
    expect(page.get_by_role("heading", name="Clusters")).to_be_focused()
    for path in ("/settings", "/api-keys", "/users"):
        page.goto(path)
        page.locator("main table").first.wait_for()
        assert no_horizontal_scroll(page), path
    page.context.close()
