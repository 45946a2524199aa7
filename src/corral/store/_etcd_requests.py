"""The request loop of the etcd backend: one endpoint at a time, failover, and the retry rules.

`Requests.run(what, attempt, retry)` runs `attempt(channel, timeout, uncertain)` on the endpoint
in use. A failure is classified (`_etcd_errors.classify`); on refused / no leader / lost the
pool moves to the next endpoint and the attempt is tried again when `retry` allows it:
`always` (reads, idempotent calls), `checked` (a write whose compare tells afterwards whether a
lost try was applied: the attempt is told `uncertain=True`), `never` (other writes: a lost try
raises StoreUnavailable at once). Everything happens within `request_timeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aetcd.rpc as rpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from corral.store._etcd_channel import REQUIRE_LEADER, Endpoint, EndpointPool
from corral.store._etcd_errors import Failure, classify
from corral.store._feed import StoreClosed
from corral.store.base import StoreError, StoreUnavailable

Retry = Literal["always", "checked", "never"]
Attempt = Callable[[grpc.aio.Channel, float, bool], Awaitable[Any]]

#: Longest single try of a request that may be retried (reads, checked writes), in seconds.
ATTEMPT_CAP = 2.0
#: Timeout of the "who leads?" question asked after an endpoint broke, in seconds.
SETTLE_TIMEOUT = 1.0


class Answer(Exception):
    """etcd answered a request with an error about the request (kind `answer`)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


class Requests:
    """Runs a store's requests against its endpoint pool."""

    def __init__(
        self,
        pool: EndpointPool,
        name: str,
        request_timeout: float,
        closed: Callable[[], bool],
        saw: Callable[[int], None],
    ) -> None:
        self.pool = pool
        self.name = name
        self.request_timeout = request_timeout
        self._closed = closed
        self._saw = saw

    def _check_open(self) -> None:
        if self._closed():
            raise StoreClosed()

    async def _settle(self, endpoint: Endpoint, timeout: float) -> Failure | None:
        """After an endpoint broke: does `endpoint` see a leader that is not the dead member?
        (A follower keeps forwarding to a dead leader until it notices; writes sent meanwhile
        would wait for nothing.) A failure here is never "lost": the request was not sent."""
        suspects = self.pool.suspects()
        if not suspects:
            return None
        try:
            answer = await rpc.MaintenanceStub(self.pool.channel(endpoint)).Status(
                rpc.StatusRequest(), timeout=min(timeout, SETTLE_TIMEOUT), metadata=REQUIRE_LEADER
            )
        except grpc.aio.AioRpcError as error:
            failure = classify(error)
            lost = failure.kind == "lost" and failure.code == "UNAVAILABLE"
            self.pool.failed(endpoint, gone=failure.kind == "refused" or lost)
            # the request itself was not sent: whatever broke, it was not applied
            return Failure("refused", failure.detail, failure.code)
        self.pool.learn(endpoint, int(answer.header.member_id))
        leader = int(answer.leader)
        if not leader or leader in suspects:
            return Failure("no_leader", f"no leader yet (member {leader:x} is gone)", "SETTLE")
        self.pool.clear_suspects()
        return None

    async def run(self, what: str, attempt: Attempt, retry: Retry) -> Any:
        """Run `attempt(channel, timeout, uncertain)` on the current endpoint, failing over
        as the retry rule allows, within request_timeout; returns its response."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        errors: dict[str, str] = {}
        uncertain = False
        failures = 0
        backoff = 0.05
        while True:
            self._check_open()
            endpoint = self.pool.current
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._unavailable(what, errors)
            failure = await self._settle(endpoint, remaining)
            settling = failure is not None
            if failure is None:
                limit = remaining if retry == "never" else min(remaining, ATTEMPT_CAP)
                try:
                    response = await attempt(self.pool.channel(endpoint), limit, uncertain)
                except grpc.aio.AioRpcError as error:
                    failure = classify(error)
                    if self._closed():
                        raise StoreClosed() from None
                    if failure.kind == "answer":
                        raise Answer(failure) from None
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if self._closed() and task is not None and not task.cancelling():
                        raise StoreClosed() from None
                    raise
                else:
                    header = getattr(response, "header", None)
                    if header is not None:
                        self._saw(int(header.revision))
                        self.pool.learn(endpoint, int(header.member_id))
                    return response
                gone = failure.kind == "refused" or (
                    failure.kind == "lost" and failure.code == "UNAVAILABLE"
                )
                self.pool.failed(endpoint, gone=gone)
            errors[endpoint.url] = failure.detail
            if failure.kind == "lost":
                if retry == "never":
                    raise StoreUnavailable(
                        f"{self.name}: {what}: the connection to {endpoint.url} failed while the "
                        f"request was out ({failure.detail}); it may or may not have been applied"
                    )
                uncertain = uncertain or retry == "checked"
            failures += 1
            if settling or failures % len(self.pool.endpoints) == 0:
                await asyncio.sleep(max(0.0, min(backoff, deadline - loop.time())))
                backoff = min(backoff * 2, 0.5)

    def _unavailable(self, what: str, errors: dict[str, str]) -> StoreUnavailable:
        seen = "; ".join(f"{url}: {why}" for url, why in errors.items()) or "no answer"
        return StoreUnavailable(
            f"{self.name} is unavailable: {what} did not succeed within "
            f"{self.request_timeout:g}s ({seen})"
        )

    def answer_error(self, what: str, answer: Answer) -> StoreError:
        detail = answer.failure.detail
        if "space exceeded" in detail or "NOSPACE" in detail:
            return StoreUnavailable(f"{self.name}: {what}: {detail} (etcd needs compaction/defrag)")
        return StoreError(f"{self.name}: {what}: {detail}")
