"""The shell page: xterm.js on /v3/shell through corral lb. Commands run, the terminal size
follows the page, paste works, an idle shell stays open, Close and `exit` end it cleanly (the
audit log records the close), and no Content-Security-Policy violation happens on the way."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.e2e.ui.harness import UiSystem
from tests.support.net import wait_until

SIZE = re.compile(r"size=(\d+)x(\d+)")
IDLE_MS = 2000


def terminal_text(page: Page) -> str:
    """What the terminal shows (xterm's DOM renderer rows)."""
    return page.locator("#terminal .xterm-rows").inner_text()


def run(page: Page, command: str) -> None:
    """Type a command line into the focused terminal and press Enter."""
    page.locator("#terminal .xterm-helper-textarea").focus()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def sizes(page: Page) -> list[tuple[int, int]]:
    """Every `size=ROWSxCOLS` the terminal shows, in order."""
    return [(int(rows), int(cols)) for rows, cols in SIZE.findall(terminal_text(page))]


def audit_events(ui: UiSystem) -> list[str]:
    """The `event` of every shell record in the audit file."""
    path = ui.base_dir / "audit" / "corral-api-audit.log"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["event"] for r in records if r.get("requestURI") == "/v3/shell" and "event" in r]


def test_shell_runs_commands_resizes_pastes_idles_and_closes(ui: UiSystem,
                                                            admin_page: Page) -> None:
    """`echo corral-$((6*7))` prints corral-42; a smaller window gives the shell a smaller
    size; pasted text arrives; after an idle pause the shell still answers; Close ends the
    session (audited), Connect opens a new one, `exit` ends it with its status."""
    page = admin_page
    console_from = len(ui.console)
    closes_before = audit_events(ui).count("shell.close")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Shell").click()
    state = page.locator("#shell-state")
    expect(state).to_have_attribute("data-state", "connected")
    run(page, "echo corral-$((6*7))")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("corral-42")
    ui.shot(page, "shell")

    run(page, "echo size=$(stty size | tr ' ' x)")
    first = wait_until(lambda: sizes(page)[-1:], timeout=10, what="the terminal size")[0]
    rows_shown = page.locator("#terminal .xterm-rows > div")
    assert rows_shown.count() == first[0]
    page.set_viewport_size({"width": 900, "height": 640})
    wait_until(lambda: rows_shown.count() < first[0], timeout=10, what="the terminal to shrink")
    run(page, "echo size=$(stty size | tr ' ' x)")
    smaller = wait_until(lambda: [s for s in sizes(page) if s != first][-1:], timeout=10,
                         what="the shell to see the new size")[0]
    assert smaller[0] < first[0] and smaller[1] < first[1], (first, smaller)
    assert smaller[0] == rows_shown.count()
    page.set_viewport_size({"width": 1280, "height": 800})

    page.evaluate("() => navigator.clipboard.writeText('echo pasted-$((20+3))')")
    page.get_by_role("button", name="Paste").click()
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("echo pasted-$((20+3))")
    run(page, "")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("pasted-23")

    page.wait_for_timeout(IDLE_MS)  # the behaviour under test is an idle pause itself
    run(page, "echo still-$((40+2))-here")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("still-42-here")

    page.get_by_role("button", name="Close").click()
    expect(state).to_have_attribute("data-state", "closed")
    wait_until(lambda: audit_events(ui).count("shell.close") == closes_before + 1, timeout=10,
               what="the shell.close audit record")

    page.get_by_role("button", name="Connect").click()
    expect(state).to_have_attribute("data-state", "connected")
    run(page, "exit")
    expect(state).to_have_attribute("data-state", "exited")
    expect(page.locator("#shell-message")).to_have_text("exit status 0")
    violations = [line for line in ui.console[console_from:] if "Content Security Policy" in line]
    assert not violations, violations
