"""`cancel_and_wait` ends tasks for certain: one that swallows its cancellation is cancelled
again, failures are retrieved (never "exception was never retrieved"), and tasks that already
ended are fine."""

from __future__ import annotations

import asyncio
import gc

import pytest

from corral.tasks import cancel_and_wait


async def _stubborn(swallowed: list[int], entered: asyncio.Event) -> None:
    entered.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:  # lost, as Python 3.11's wait_for can lose one
        swallowed.append(1)
    await asyncio.sleep(3600)


@pytest.mark.timeout(30)
def test_a_task_that_swallows_its_cancellation_is_cancelled_again() -> None:
    swallowed: list[int] = []

    async def run() -> asyncio.Task[None]:
        entered = asyncio.Event()
        task = asyncio.create_task(_stubborn(swallowed, entered))
        async with asyncio.timeout(5):
            await entered.wait()
        stopping = asyncio.create_task(cancel_and_wait([task], retry_s=0.05))
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "cancel_and_wait still waits for a task that lost its cancel"
        return task

    task = asyncio.run(run())
    assert swallowed == [1]
    assert task.cancelled()


@pytest.mark.timeout(30)
def test_failed_and_finished_tasks_are_retrieved_and_a_stop_does_not_fail(
    recwarn: pytest.WarningsRecorder,
) -> None:
    unretrieved: list[object] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def returns() -> int:
        return 7

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: unretrieved.append(context.get("message")))
        failing = asyncio.create_task(fails())
        finished = asyncio.create_task(returns())
        await asyncio.wait({failing, finished})
        await cancel_and_wait([failing, finished, failing])
        await cancel_and_wait([])
        del failing, finished
        gc.collect()

    asyncio.run(run())
    assert unretrieved == []
