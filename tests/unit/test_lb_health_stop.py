"""The health checker's `stop` returns even when a checking loop swallowed its cancellation
(Python 3.11's `asyncio.wait_for` does when the awaited future completes as the cancel
arrives): a draining lb worker exits only after `stop`, so a lost cancel kept old workers alive
for good and made every later reload's drain wait its full limit."""

from __future__ import annotations

import asyncio

import pytest

from corral.config.lb import Upstream
from corral.proxy import health
from corral.proxy.upstream import Endpoint, UpstreamPool


@pytest.mark.timeout(30)
def test_stop_returns_when_a_probe_swallows_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    swallowed = []
    inside: list[str] = []
    both_inside = asyncio.Event()

    async def stubborn_probe(endpoint: Endpoint, check: object) -> bool:
        inside.append(endpoint.address)
        if len(inside) == 2:
            both_inside.set()
        if endpoint.address in swallowed:
            await asyncio.sleep(3600)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # the first cancel is lost, as in wait_for: carry on
            swallowed.append(endpoint.address)
        return True

    monkeypatch.setattr(health, "probe", stubborn_probe)
    config = Upstream(servers=["127.0.0.1:9", "127.0.0.1:10"],
                      health_check={"interval": "1h"})  # type: ignore[arg-type]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        checker = health.HealthChecker([UpstreamPool("rancher", config, loop.time)], print)
        checker.start()
        async with asyncio.timeout(5):
            await both_inside.wait()
        stopping = asyncio.create_task(checker.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "stop() still waits for a loop that lost its cancellation"

    asyncio.run(run())
    assert sorted(swallowed) == ["127.0.0.1:10", "127.0.0.1:9"]
