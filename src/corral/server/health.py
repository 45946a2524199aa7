"""Liveness and trust endpoints: `/ping`, `/healthz` (`?verbose`), `GET /cacerts`.

`/healthz?verbose` answers in the Kubernetes style, one line per check:

    [+]ping ok
    [+]store ok: backend=etcd endpoint=https://10.0.0.1:2379 revision=42 members=3/3 healthy
    [+]store-member m0 ok: https://10.0.0.1:2379
    [+]store-member m1 ok: https://10.0.0.2:2379
    [-]store-member m2 failed: https://10.0.0.3:2379 connection refused
    [+]audit-log ok: level=1 written=10 dropped=0 errors=0 rotations=0 pending=0
    [+]certificates ok: source=generated days_left=364
    [+]leader ok: host-b:443/812 (this server is host-a:443/977)
    healthz check passed

A failing check turns the answer into `500` with `[-]<name> failed: <reason>` and
`healthz check failed`. The store check fails when `Store.status()` says writes cannot succeed
(an etcd cluster without quorum, an embedded store that does not answer), so a load balancer
takes the server out; one etcd member down is shown on its own line but fails nothing while the
others keep a quorum. The audit log never fails the check: a full disk is reported, not fatal
(the API keeps answering), so a load balancer does not take the node out over it. Neither does
the leader line: which server leads matters for the duties, not for serving requests.
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
from corral.store.base import StoreStatus

STORE_CHECK_TIMEOUT_SECONDS = 2.0
PEM_MEDIA_TYPE = "text/plain"
MEMBER_CHECK = "store-member "


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


async def _revision(ctx: ServerContext) -> int | None:
    try:
        return await asyncio.wait_for(ctx.store.revision(), STORE_CHECK_TIMEOUT_SECONDS)
    except Exception:  # TimeoutError, StoreUnavailable, …: the status says why
        return None


async def _status(ctx: ServerContext) -> StoreStatus:
    try:
        return await asyncio.wait_for(ctx.store.status(), STORE_CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return StoreStatus("?", "", False,
                           detail=f"no answer within {STORE_CHECK_TIMEOUT_SECONDS}s")
    except Exception as exc:
        return StoreStatus("?", "", False, detail=f"{type(exc).__name__}: {exc}")


async def store_checks(ctx: ServerContext) -> list[CheckResult]:
    """The store line (backend, endpoint in use, revision, members) and one line per member;
    only the store line can fail the check (no quorum: writes cannot succeed)."""
    status, revision = await asyncio.gather(_status(ctx), _revision(ctx))
    facts: dict[str, Any] = {"backend": status.backend, "endpoint": status.endpoint or None,
                             "revision": revision}
    if status.members:
        healthy = sum(1 for member in status.members if member.healthy)
        facts["members"] = f"{healthy}/{len(status.members)} healthy"
    detail = _facts(facts) + (f" {status.detail}" if status.detail else "")
    lines = [CheckResult("store", status.healthy, detail)]
    for member in status.members:
        text = " ".join(part for part in (member.endpoint, member.detail) if part)
        lines.append(CheckResult(f"store-member {member.name}", member.healthy, text))
    return lines


async def check_store(ctx: ServerContext) -> CheckResult:
    """The store can take writes (Store.status()), with its backend, endpoint and revision."""
    return (await store_checks(ctx))[0]


async def check_leader(ctx: ServerContext) -> CheckResult:
    """Who runs the duties that run once (never fails)."""
    election = ctx.election
    if election is None:
        return CheckResult("leader", True, "this server (embedded store: the only server)")
    me = election.candidate.identity
    if election.leading:
        return CheckResult("leader", True, f"{me} (this server)")
    leader = election.leader or "none known (an election is under way)"
    return CheckResult("leader", True, f"{leader} (this server is {me})")


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


CHECKS: tuple[Check, ...] = (check_audit_log, check_certificates, check_leader)


async def run_checks(ctx: ServerContext) -> list[CheckResult]:
    """Every check, in order: ping, the store and its members, then CHECKS."""
    results = [await check_ping(ctx), *await store_checks(ctx)]
    return results + [await check(ctx) for check in CHECKS]


def render(results: list[CheckResult], *, verbose: bool) -> tuple[int, str]:
    """Status code and body of /healthz (a failed `store-member` line alone fails nothing)."""
    healthy = all(result.ok for result in results if not result.name.startswith(MEMBER_CHECK))
    if not verbose:
        if healthy:
            return 200, "ok"
        lines = [f"[-]{r.name} failed: reason withheld" for r in results
                 if not r.ok and not r.name.startswith(MEMBER_CHECK)]
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
