"""Memory per idle TLS connection: open many full handshakes, read the worker's RSS delta."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
import time
from dataclasses import dataclass

import psutil

HANDSHAKE_CONCURRENCY = 64
HANDSHAKE_TIMEOUT_S = 30.0
SETTLE_POLL_S = 0.2
SETTLE_MAX_S = 3.0


@dataclass(frozen=True)
class IdleResult:
    """RSS of the worker before and with `opened` idle TLS connections."""

    requested: int
    opened: int
    rss_before: int
    rss_with_connections: int

    @property
    def kib_per_connection(self) -> float:
        if not self.opened:
            return float("nan")
        return (self.rss_with_connections - self.rss_before) / 1024 / self.opened


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _open_one(
    port: int, context: ssl.SSLContext, gate: asyncio.Semaphore
) -> asyncio.StreamWriter | None:
    async with gate:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=context),
                HANDSHAKE_TIMEOUT_S,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            return None
        return writer


async def _hold_idle(
    port: int, count: int, context: ssl.SSLContext, measure: psutil.Process
) -> tuple[int, int]:
    gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)
    writers = await asyncio.gather(*(_open_one(port, context, gate) for _ in range(count)))
    opened = [w for w in writers if w is not None]
    try:
        rss = await settled_rss(measure)
        still_open = sum(1 for w in opened if not w.is_closing())
        return still_open, rss
    finally:
        for writer in opened:
            writer.close()
        for writer in opened:
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


async def settled_rss(process: psutil.Process) -> int:
    """RSS once it stops growing (the worker may still be finishing handshakes' bookkeeping)."""
    deadline = time.monotonic() + SETTLE_MAX_S
    rss = process.memory_info().rss
    while time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)  # an idle period is what is being measured
        now = process.memory_info().rss
        if now <= rss:
            return now
        rss = now
    return rss


def measure_idle_connections(
    worker_pid: int, port: int, count: int, context: ssl.SSLContext
) -> IdleResult:
    """Open `count` idle TLS connections to 127.0.0.1:port and report the worker's RSS delta."""
    process = psutil.Process(worker_pid)
    before = process.memory_info().rss
    opened, with_connections = asyncio.run(_hold_idle(port, count, context, process))
    return IdleResult(count, opened, before, with_connections)
