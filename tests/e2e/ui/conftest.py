"""One system for every UI test of this directory (server, lb and browser start once; the
tests share the admin's browser context). A first-login test runs first (file order); the
others get the admin logged in either way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.e2e.ui.harness import CHROMIUM, UiSystem, running_system, screenshot_dir


@pytest.fixture(scope="package")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiSystem]:
    """The running system (corral server behind corral lb) and chromium."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup installs it)")
    base = tmp_path_factory.mktemp("ui")
    shots = screenshot_dir(base / "screenshots")
    print(f"UI screenshots in {shots}")
    yield from running_system(base, shots)


@pytest.fixture(scope="package")
def admin_context(ui: UiSystem) -> BrowserContext:
    """The admin's browser context (1280 by 800)."""
    return ui.new_context()


@pytest.fixture
def admin_page(ui: UiSystem, admin_context: BrowserContext) -> Iterator[Page]:
    """A page of the admin's context, logged in (the first time, after the password change)."""
    page = admin_context.new_page()
    page.goto("/")
    page.wait_for_function("() => document.querySelector('main h1, #login-title') !== null")
    if page.url.rstrip("/").endswith("/login") or "/login?" in page.url:
        ui.login(page, "admin", ui.ensure_admin_password())
    page.get_by_role("heading", name="Dashboard").wait_for()
    yield page
    page.close()
