"""Liveness and trust endpoints: `/ping`, `/healthz` (`?verbose`), `GET /cacerts`.

`/healthz?verbose` answers in the Kubernetes style, one line per check:

    [+]ping ok
    [+]store ok: revision=42
    [+]audit-log ok: level=1 written=10 dropped=0 errors=0 rotations=0 pending=0
    [+]certificates ok: source=generated days_left=364
    healthz check passed

A failing check turns the answer into `500` with `[-]<name> failed: <reason>` and
`healthz check failed`. The audit log never fails the check: a full disk is reported, not fatal
(the API keeps answering), so a load balancer does not take the node out over it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from corral.server.context import ServerContext

STORE_CHECK_TIMEOUT_SECONDS = 2.0
PEM_MEDIA_TYPE = "text/plain"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of /healthz?verbose."""

    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        mark, word = ("+", "ok") if self.ok else ("-", "failed")
        return f"[{mark}]{self.name} {word}" + (f": {self.detail}" if self.detail else "")


Check = Callable[[ServerContext], Awaitable[CheckResult]]


def _facts(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items() if value is not None)


async def check_ping(ctx: ServerContext) -> CheckResult:
    """Always ok: the process answers."""
    return CheckResult("ping", True)


async def check_store(ctx: ServerContext) -> CheckResult:
    """The store answers a revision read in time."""
    try:
        revision = await asyncio.wait_for(ctx.store.revision(), STORE_CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return CheckResult("store", False, f"no answer within {STORE_CHECK_TIMEOUT_SECONDS}s")
    except Exception as exc:
        return CheckResult("store", False, type(exc).__name__)
    return CheckResult("store", True, f"revision={revision}")


async def check_audit_log(ctx: ServerContext) -> CheckResult:
    """Reports the audit log's counters; problems are shown but never fail the check."""
    if ctx.audit is None:
        return CheckResult("audit-log", True, "level=0 (off)")
    audit = ctx.audit
    facts: dict[str, Any] = {"level": audit.settings.level, **audit.stats()}
    last_error = getattr(audit, "last_error", "")
    if last_error:
        facts["last_error"] = repr(str(last_error))
    return CheckResult("audit-log", True, _facts(facts))


async def check_certificates(ctx: ServerContext) -> CheckResult:
    """The serving certificate is present and not expired."""
    certificates = ctx.certificates
    if certificates is None:
        return CheckResult("certificates", True, "none")
    facts = certificates.status()
    days_left = facts.get("days_left")
    ok = days_left is not None and days_left >= 0
    shown = {key: facts.get(key) for key in ("source", "days_left", "ca_fingerprint")}
    return CheckResult("certificates", ok, _facts(shown))


CHECKS: tuple[Check, ...] = (check_ping, check_store, check_audit_log, check_certificates)


async def run_checks(ctx: ServerContext) -> list[CheckResult]:
    """Every check, in order."""
    return [await check(ctx) for check in CHECKS]


def render(results: list[CheckResult], *, verbose: bool) -> tuple[int, str]:
    """Status code and body of /healthz."""
    healthy = all(result.ok for result in results)
    if not verbose:
        if healthy:
            return 200, "ok"
        lines = [f"[-]{r.name} failed: reason withheld" for r in results if not r.ok]
        return 500, "\n".join([*lines, "healthz check failed"]) + "\n"
    lines = [result.line() for result in results]
    lines.append("healthz check passed" if healthy else "healthz check failed")
    return (200 if healthy else 500), "\n".join(lines) + "\n"


def health_routes(ctx: ServerContext) -> list[BaseRoute]:
    """The routes of this module, bound to `ctx`."""

    async def ping(request: Request) -> Response:
        return PlainTextResponse("pong")

    async def healthz(request: Request) -> Response:
        verbose = "verbose" in request.query_params
        status, body = render(await run_checks(ctx), verbose=verbose)
        return PlainTextResponse(body, status_code=status)

    async def cacerts(request: Request) -> Response:
        return PlainTextResponse(ctx.cacerts_pem, media_type=PEM_MEDIA_TYPE)

    return [
        Route("/ping", ping, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/cacerts", cacerts, methods=["GET", "HEAD"]),
    ]
