"""The lease-based election (corral.server.election) on the in-memory store: one leader, the
lead moving on resignation and on a leader that stops renewing, stepping down when renewals
fail, and the duties following the lead."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from corral.server.duties import Duties, Duty
from corral.server.election import Candidate, Election
from corral.store.base import StoreUnavailable
from corral.store.memory import MemoryStore

KEY = "/system/election/test"
TTL = 1


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until `condition()` holds; returns the seconds it took (fails after `timeout`)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


class FlakyStore(MemoryStore):
    """A memory store whose lease renewals can be made to fail (an unreachable store)."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals_fail = False

    async def keep_alive(self, lease: int) -> int:
        if self.renewals_fail:
            raise StoreUnavailable("memory store: renewals switched off by the test")
        return await super().keep_alive(lease)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def candidates(store: MemoryStore, count: int) -> tuple[list[Election], list[tuple[str, bool]]]:
    """`count` elections on `store` and the (identity, leading) changes they report."""
    changes: list[tuple[str, bool]] = []
    elections = []
    for index in range(count):
        name = f"server-{index}"
        elections.append(Election(
            store, KEY, Candidate(name), ttl=TTL,
            on_change=lambda leading, _detail, name=name: changes.append((name, leading)),
        ))
    return elections, changes


def test_exactly_one_of_three_leads_and_the_others_know_who() -> None:
    """Three candidates: one leads, the other two follow and name it as the leader."""

    async def scenario() -> None:
        store = MemoryStore()
        elections, changes = candidates(store, 3)
        for election in elections:
            election.start()
        await eventually(lambda: any(e.leading for e in elections), 5, "a leader")
        leader = next(e for e in elections if e.leading)
        await eventually(lambda: all(e.leader == leader.candidate.identity for e in elections),
                         5, "every candidate to know the leader")
        assert [e.leading for e in elections].count(True) == 1
        assert changes == [(leader.candidate.identity, True)]
        for election in elections:
            await election.resign()
        await store.close()

    run(scenario)


def test_resigning_hands_the_lead_over_at_once() -> None:
    """A leader that resigns revokes its lease: another candidate leads well within the TTL."""

    async def scenario() -> None:
        store = MemoryStore()
        elections, changes = candidates(store, 2)
        for election in elections:
            election.start()
        await eventually(lambda: any(e.leading for e in elections), 5, "a leader")
        first = next(e for e in elections if e.leading)
        other = next(e for e in elections if e is not first)
        await first.resign()
        took = await eventually(lambda: other.leading, 5, "the other to lead")
        assert took < TTL
        assert changes[-2:] == [(first.candidate.identity, False),
                                (other.candidate.identity, True)]
        await other.resign()
        assert await store.get(KEY) is None
        await store.close()

    run(scenario)


def test_a_dead_leader_is_replaced_after_its_lease_expires() -> None:
    """A leader that stops without resigning (killed) is replaced once its lease runs out,
    not before the TTL and not much after."""

    async def scenario() -> None:
        store = MemoryStore()
        elections, _ = candidates(store, 2)
        for election in elections:
            election.start()
        await eventually(lambda: any(e.leading for e in elections), 5, "a leader")
        first = next(e for e in elections if e.leading)
        other = next(e for e in elections if e is not first)
        assert first._task is not None
        first._task.cancel()  # dies: no revoke, the lease just stops being renewed
        took = await eventually(lambda: other.leading, 5, "the other to lead")
        assert TTL * 0.5 <= took <= TTL * 2.5
        await other.resign()
        await store.close()

    run(scenario)


def test_a_leader_that_cannot_renew_steps_down_before_its_lease_ends() -> None:
    """When renewals fail, the leader reports losing the lead within 2/3 of the TTL (before
    any other server could have taken over), and leads again once the store answers."""

    async def scenario() -> None:
        store = FlakyStore()
        elections, changes = candidates(store, 1)
        election = elections[0]
        election.start()
        await eventually(lambda: election.leading, 5, "the lead")
        store.renewals_fail = True
        took = await eventually(lambda: not election.leading, 5, "stepping down")
        assert took <= TTL * 2 / 3 + 0.4
        store.renewals_fail = False
        await eventually(lambda: election.leading, 5, "leading again")
        assert [leading for _, leading in changes] == [True, False, True]
        await election.resign()
        await store.close()

    run(scenario)


def test_a_leader_whose_key_is_deleted_steps_down_and_campaigns_again() -> None:
    """Deleting the election key (an operator, or a lease revoked elsewhere) ends the lead at
    once; the candidate then campaigns and leads again under a new lease."""

    async def scenario() -> None:
        store = MemoryStore()
        elections, changes = candidates(store, 1)
        election = elections[0]
        election.start()
        await eventually(lambda: election.leading, 5, "the lead")
        first = await store.get(KEY)
        assert first is not None
        await store.delete(KEY)
        await eventually(lambda: len(changes) >= 3, 5, "stepping down and leading again")
        assert [leading for _, leading in changes] == [True, False, True]
        again = await store.get(KEY)
        assert again is not None and again.lease != first.lease
        await election.resign()
        await store.close()

    run(scenario)


def test_duties_run_only_while_leading() -> None:
    """Duties start on election (running at once) and are cancelled when the lead is lost."""

    async def scenario() -> None:
        runs: list[float] = []

        async def job() -> str:
            runs.append(time.monotonic())
            return ""

        duties = Duties([Duty("job", 0.05, job)], report=lambda line: None)
        duties.set_leading(True)
        await eventually(lambda: len(runs) >= 2, 5, "the duty to run twice")
        tasks = list(duties._tasks)
        duties.set_leading(False)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(task.cancelled() for task in tasks)
        assert not duties.running
        duties.set_leading(True)
        count = len(runs)
        await eventually(lambda: len(runs) > count, 5, "the duty to run again when re-elected")
        await duties.stop()

    run(scenario)


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_ttl_below_one_second_is_refused(ttl: int) -> None:
    """The election refuses a TTL it could not renew in time."""
    with pytest.raises(ValueError, match="at least 1 second"):
        Election(MemoryStore(), KEY, Candidate("x"), ttl=ttl)
