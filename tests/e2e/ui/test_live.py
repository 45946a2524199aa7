"""The dashboard follows the system without a reload: changes made through the API arrive over
/v3/subscribe, a server that stops answering turns its node red within seconds, and with node
records in the store (an HA install) every node is listed with its own health."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from playwright.sync_api import Page, expect

from corral.server.domain.nodes import NodeRecord, ServiceHealth, remove_node, write_node
from corral.store import open_store
from tests.e2e.ui.harness import UiSystem

DOWN_WITHIN_S = 5.0
HA_NODES = ("node-a", "node-b", "node-c")


def set_node_records(data_dir: Path, *, present: bool) -> None:
    """Write (or remove) three nodes' records in a stopped server's embedded store, as their
    supervisors would: node-a and node-b healthy and fresh, node-c's server failing."""

    async def change() -> None:
        store = open_store(data_dir)
        try:
            now = int(time.time() * 1000)
            for index, name in enumerate(HA_NODES):
                if not present:
                    await remove_node(store, name)
                    continue
                healthy = name != "node-c"
                await write_node(store, NodeRecord(
                    name=name, roles=("controlplane", "etcd", "worker"),
                    address=f"192.0.2.{10 + index}", internal_address=f"10.0.0.{10 + index}",
                    version="0.1.0", heartbeat_at_ms=now, created_at_ms=now,
                    hostname=f"{name}.example.com",
                    services={
                        "server": ServiceHealth(healthy, "" if healthy else "connection refused"),
                        "etcd": ServiceHealth(True, "member healthy"),
                    },
                ))
        finally:
            await store.close()

    # Playwright's sync API runs an event loop in this thread: use another one for the store.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, change()).result()


def test_api_changes_appear_on_an_open_dashboard(ui: UiSystem, admin_page: Page) -> None:
    """server-url changed and a cluster created through the API show on the open dashboard
    without a reload."""
    page = admin_page
    page.evaluate("() => { window.stillTheSamePage = true; }")
    count = page.locator("#cluster-count")
    expect(count).not_to_have_text("…")
    before = int(count.inner_text())
    with ui.http(headers={"Authorization": f"Bearer {ui.admin_token()}"}) as client:
        client.put("/v3/settings/server-url",
                   json={"value": "https://live-change.example.com"}).raise_for_status()
        client.post("/v3/clusters", json={"name": "made-by-api"}).raise_for_status()
        expect(page.locator("#server-url")).to_contain_text("https://live-change.example.com")
        expect(count).to_have_text(str(before + 1))
        client.put("/v3/settings/server-url", json={"value": ui.base_url}).raise_for_status()
        expect(page.locator("#server-url")).to_contain_text(ui.base_url)
    assert page.evaluate("() => window.stillTheSamePage") is True


def test_nodes_turn_red_when_the_server_stops_and_ha_nodes_are_all_listed(
    ui: UiSystem, admin_page: Page
) -> None:
    """The node turns red within seconds of the server stopping; started again with three node
    records in its store, the dashboard lists all three, the failing one red; without them,
    the single node again."""
    page = admin_page
    rows = page.locator("#nodes tbody tr")
    expect(rows.first).to_have_attribute("data-state", "active")
    ui.server.stop()
    stopped = time.monotonic()
    expect(rows.first).to_have_attribute("data-state", "unreachable", timeout=10_000)
    assert time.monotonic() - stopped < DOWN_WITHIN_S
    expect(page.locator("#live-state")).to_have_attribute("data-state", "down")
    ui.shot(page, "node-down")

    set_node_records(ui.server.data_dir, present=True)
    ui.restart_server()
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(rows).to_have_count(3)
    for name, state in (("node-a", "active"), ("node-b", "active"), ("node-c", "unavailable")):
        row = page.locator(f'#nodes tr[data-node="{name}"]')
        expect(row).to_have_attribute("data-state", state)
    expect(page.locator('#nodes tr[data-node="node-c"]')).to_contain_text("connection refused")
    ui.shot(page, "nodes-ha")

    ui.server.stop()
    set_node_records(ui.server.data_dir, present=False)
    ui.restart_server()
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-state", "active")
