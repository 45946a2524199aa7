"""Active health checks: `GET <path>` on every endpoint, `rise`/`fall` counting.

The checker reports through `Endpoint.mark(up)` and knows nothing of balancing. A 2xx or 3xx
answer within `timeout` is a success; anything else (refused, timeout, 4xx/5xx) a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from corral.config.lb import HealthCheck
from corral.proxy.upstream import Endpoint, UpstreamPool
from corral.tasks import cancel_and_wait


async def probe(endpoint: Endpoint, check: HealthCheck) -> bool:
    """One check of one endpoint."""
    host = check.host or endpoint.address
    request = (
        f"GET {check.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corral-health-check\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.write(request)
            status_line = await reader.readline()
        parts = status_line.split(None, 2)
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1][:1] in b"23"
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            # wait for the close to finish, so no transport outlives the probe (asyncio.timeout,
            # not wait_for: Python 3.11's wait_for loses a cancellation that arrives as the
            # close completes, and the checking loop would then outlive `stop`)
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(check.timeout):
                    await writer.wait_closed()


class HealthChecker:
    """Runs one checking loop per endpoint of every upstream that has `health_check`."""

    def __init__(self, pools: list[UpstreamPool], say: Callable[[str], None]) -> None:
        self._pools = [p for p in pools if p.config.health_check is not None]
        self._say = say  # a line for the error log (an endpoint went up or down)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start checking (first check at once)."""
        for pool in self._pools:
            for endpoint in pool.endpoints:
                self._tasks.append(asyncio.create_task(self._loop(pool, endpoint)))

    async def _loop(self, pool: UpstreamPool, endpoint: Endpoint) -> None:
        check = pool.config.health_check
        assert check is not None
        successes = failures = 0
        was_up = endpoint.up
        while True:
            if was_up and not endpoint.up:  # ejected by the request path meanwhile
                successes = 0
            ok = await probe(endpoint, check)
            if ok:
                successes, failures = successes + 1, 0
                if not endpoint.up and successes >= check.rise:
                    endpoint.mark(True)
                    self._say(f"endpoint {endpoint.address} of {pool.name!r} is up")
            else:
                successes, failures = 0, failures + 1
                if endpoint.up and failures >= check.fall:
                    endpoint.mark(False)
                    self._say(f"endpoint {endpoint.address} of {pool.name!r} is down")
                    if not pool.any_available(asyncio.get_running_loop().time()):
                        self._say(f"every endpoint of {pool.name!r} is down: requests go to "
                                  "all of them until one is up again")
            was_up = endpoint.up
            await asyncio.sleep(check.interval)

    async def stop(self) -> None:
        """Stop every loop; returns once none runs. A draining worker exits only after this,
        so a loop that swallowed its cancellation (library code may) is cancelled again
        rather than waited for."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
