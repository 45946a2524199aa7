"""The work that must run on one server at a time: started when this server becomes the
leader (corral.server.election), cancelled when it stops being the leader.

Each duty runs at once on election and then every `interval` seconds; a failure is logged and
the duty tries again at its next turn. Duties:

* `ca-renewal` — replace the shared generated CA when fewer than 30 days remain (HA only: with
  the embedded store, the server's own certificate check renews its CA);
* `token-cleanup` — delete expired tokens (each with a compare on the revision read, so a
  token renewed meanwhile is kept).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from corral.server.domain.clock import now_ms
from corral.server.domain.errors import ChangedConcurrently
from corral.server.domain.tokens import Tokens, token_expired
from corral.store.base import StoreUnavailable
from corral.tasks import cancel_and_wait

log = logging.getLogger("corral.server.duties")

TOKEN_CLEANUP_INTERVAL_ENV = "CORRAL_TOKEN_CLEANUP_INTERVAL"
TOKEN_CLEANUP_INTERVAL_SECONDS = 3600.0
CA_RENEWAL_INTERVAL_ENV = "CORRAL_CA_RENEWAL_INTERVAL"
CA_RENEWAL_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Duty:
    """A named periodic job; `run` returns a line worth logging, or "" when nothing changed."""

    name: str
    interval: float
    run: Callable[[], Awaitable[str]]


def interval_from_env(name: str, default: float) -> float:
    """Seconds from environment variable `name` (> 0), else `default`."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


class Duties:
    """Runs its duties while `set_leading(True)` holds; `on_change` is an election listener."""

    def __init__(self, duties: Sequence[Duty], report: Callable[[str], None]) -> None:
        self.duties = list(duties)
        self._report = report
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """True while the duties run here."""
        return bool(self._tasks)

    def names(self) -> list[str]:
        """The duties' names, in order."""
        return [duty.name for duty in self.duties]

    def set_leading(self, leading: bool) -> None:
        """Start every duty (leading) or cancel them (not leading)."""
        if leading and not self._tasks:
            self._tasks = [
                asyncio.create_task(self._loop(duty), name=f"duty {duty.name}")
                for duty in self.duties
            ]
        elif not leading:
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()

    async def stop(self) -> None:
        """Cancel the duties and wait for them to end."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    async def _loop(self, duty: Duty) -> None:
        while True:
            try:
                line = await duty.run()
                if line:
                    self._report(f"{duty.name}: {line}")
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                log.warning("duty %s: the store is unavailable (%s); next try in %.0fs",
                            duty.name, exc, duty.interval)
            except Exception:
                log.exception("duty %s failed; next try in %.0fs", duty.name, duty.interval)
            await asyncio.sleep(duty.interval)


async def delete_expired_tokens(tokens: Tokens) -> str:
    """Delete every expired token; returns "deleted N expired tokens" or ""."""
    found, _ = await tokens.list()
    at = now_ms()
    deleted = 0
    for token in found:
        if not token_expired(token.data, at):
            continue
        try:
            if await tokens.delete(token):
                deleted += 1
        except ChangedConcurrently:
            continue  # changed meanwhile: looked at again next time
    return f"deleted {deleted} expired token{'s' if deleted != 1 else ''}" if deleted else ""


def token_cleanup(tokens: Tokens) -> Duty:
    """The expired-token clean-up duty."""
    return Duty(
        "token-cleanup",
        interval_from_env(TOKEN_CLEANUP_INTERVAL_ENV, TOKEN_CLEANUP_INTERVAL_SECONDS),
        lambda: delete_expired_tokens(tokens),
    )


def ca_renewal(renew: Callable[[], Awaitable[str]]) -> Duty:
    """The shared-CA renewal duty (`renew` replaces the CA when it is due)."""
    return Duty(
        "ca-renewal",
        interval_from_env(CA_RENEWAL_INTERVAL_ENV, CA_RENEWAL_INTERVAL_SECONDS),
        renew,
    )
