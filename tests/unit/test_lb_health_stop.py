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

    async def stubborn_probe(endpoint: Endpoint, check: object) -> bool:
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
        await asyncio.sleep(0.05)  # both loops are inside their probe
        stopping = asyncio.create_task(checker.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "stop() still waits for a loop that lost its cancellation"

    asyncio.run(run())
    assert sorted(swallowed) == ["127.0.0.1:10", "127.0.0.1:9"]
