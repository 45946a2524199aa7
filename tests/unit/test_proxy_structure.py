"""Shape of the proxy package: shared constants defined once, the health probe waiting for its
connection to close."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

import corral.proxy
from corral.config.lb import HealthCheck
from corral.proxy import health
from corral.proxy.upstream import Endpoint

PROXY = Path(corral.proxy.__file__).parent
SHARED = ("WRITE_HIGH_WATER_BYTES", "DRAIN_IDLE_CLOSE_S", "LAST_CHUNK", "_LAST_CHUNK")


def assigned_names(path: Path) -> set[str]:
    """Module-level names a file assigns."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


@pytest.mark.parametrize("name", SHARED)
def test_shared_constants_are_defined_once(name: str) -> None:
    """Each constant the connection modules share is assigned in one module only."""
    defining = [p.name for p in sorted(PROXY.glob("*.py")) if name in assigned_names(p)]
    assert len(defining) <= 1, f"{name} is defined in {defining}"
    if not name.startswith("_"):
        assert defining == ["constants.py"]


class FakeWriter:
    """The half of asyncio.open_connection the probe writes to."""

    def __init__(self) -> None:
        self.closed = False
        self.waited = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        assert self.closed
        await asyncio.sleep(0)
        self.waited = True


def test_health_probe_waits_for_its_connection_to_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe returns only after its writer has finished closing (no transport left behind
    for the loop to clean up after the check)."""
    writer = FakeWriter()

    async def open_connection(host: str, port: int) -> tuple[asyncio.StreamReader, FakeWriter]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 200 OK\r\n")
        return reader, writer

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    endpoint = Endpoint("127.0.0.1:9", "app", 0, lambda: 0.0)
    ok = asyncio.run(health.probe(endpoint, HealthCheck.model_validate({})))
    assert ok
    assert writer.waited
