"""Ending background tasks for certain: cancel them, wait, and cancel again what still runs.

A task can swallow its cancellation: Python 3.11's `asyncio.wait_for` loses a cancel that
arrives as the awaited future completes, and library code may catch `CancelledError`. A
shutdown that cancels once and then awaits the task waits forever in that case — a draining lb
worker that never exits, a server that outlives its supervisor's stop timeout. Corral's
shutdown paths end their tasks through `cancel_and_wait` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RETRY_S = 0.1  # a task still running this long after its cancel is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], retry_s: float = RETRY_S) -> None:
    """Cancel every task and return once none runs, cancelling again every `retry_s` a task
    that carried on. What the tasks returned or raised is retrieved and dropped: they log
    their own failures, and a stop never fails because of one."""
    every = list(tasks)
    pending = {task for task in every if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in every:
        if not task.cancelled():
            task.exception()
