"""What the WebSocket handshakes and exercises mean: upgraded over HTTP/1.1, over HTTP/2 where
offered, still open after the idle period. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.doctor.catalogue import failed, passed, skipped, warned
from corral.doctor.model import CheckResult
from corral.doctor.ws_client import Exercise, Opened


@dataclass(frozen=True, slots=True)
class WsOutcome:
    """One WebSocket attempt: its handshake and, if it opened, its exercise."""

    protocol: str  # "HTTP/1.1" or "HTTP/2"
    opened: Opened
    exercise: Exercise | None = None


def _refusal(outcome: WsOutcome, diagnostics: bool, looped: bool) -> CheckResult | None:
    """The result when the handshake did not succeed (None when it did)."""
    check_id = "websocket" if outcome.protocol == "HTTP/1.1" else "websocket-h2"
    opened = outcome.opened
    if opened.error:
        return failed(check_id, f"{outcome.protocol}: {opened.error}")
    accepted = 101 if outcome.protocol == "HTTP/1.1" else 200
    if opened.status == accepted:
        return None
    if opened.status == 404 and not diagnostics:
        return skipped(check_id, "the server has no /diagnostics/echo (not corral server?)")
    if looped and (300 <= opened.status < 400 or opened.status == 400):
        return skipped(check_id, f"answered {opened.status}: see no redirect loop")
    if outcome.protocol == "HTTP/1.1":
        return failed(check_id, f"answered {opened.status} instead of 101 Switching Protocols: "
                                "Upgrade and Connection did not reach the server")
    return failed(check_id, f"the extended CONNECT was answered {opened.status}, not 200")


def upgrade_result(outcome: WsOutcome, *, diagnostics: bool, looped: bool) -> CheckResult:
    """`websocket` / `websocket-h2`: the handshake succeeded and a message came back.
    `diagnostics`: the server has the diagnostic endpoints; `looped`: the redirect-loop check
    failed (a refusal that is its redirect is not counted twice)."""
    check_id = "websocket" if outcome.protocol == "HTTP/1.1" else "websocket-h2"
    if outcome.protocol == "HTTP/2" and not outcome.opened.offered:
        return skipped(check_id, f"not offered ({outcome.opened.error}): WebSocket clients "
                                 "use HTTP/1.1 here")
    refused = _refusal(outcome, diagnostics, looped)
    if refused is not None:
        return refused
    exercise = outcome.exercise
    how = ("101 Switching Protocols" if outcome.protocol == "HTTP/1.1"
           else "extended CONNECT :protocol websocket answered 200")
    if exercise is None or not exercise.echoed:
        problem = exercise.error if exercise is not None else "not exercised"
        return failed(check_id, f"{how}, but the echo failed: {problem}")
    return passed(check_id, f"{how}; a message came back")


def idle_result(outcomes: Sequence[WsOutcome], idle_s: float) -> CheckResult:
    """`websocket-idle`: every opened WebSocket stayed open through `idle_s` of silence."""
    tried = [o for o in outcomes if o.exercise is not None and o.exercise.echoed]
    if not tried:
        return skipped("websocket-idle", "no WebSocket opened (see above)")
    for outcome in tried:
        exercise = outcome.exercise
        assert exercise is not None
        if exercise.closed_after_s is not None or not exercise.echoed_after_idle:
            after = exercise.closed_after_s if exercise.closed_after_s is not None else idle_s
            code = f", close code {exercise.close_code}" if exercise.close_code else ""
            why = f": {exercise.error}" if exercise.error else ""
            return failed("websocket-idle", f"{outcome.protocol}: closed after {after:.1f} s "
                                            f"idle of {idle_s:g} s{code}{why} (the load "
                                            "balancer's read timeout is shorter)")
    protocols = " and ".join(o.protocol for o in tried)
    interrupted = [o for o in tried if o.exercise is not None and o.exercise.pings
                   and o.exercise.longest_silence_s < idle_s]
    if interrupted:
        exercise = interrupted[0].exercise
        assert exercise is not None
        return warned("websocket-idle", f"open after {idle_s:g} s over {protocols}, but the "
                                        f"server sent {exercise.pings} ping(s) meanwhile: the "
                                        "longest silence was "
                                        f"{exercise.longest_silence_s:.1f} s, so only that much "
                                        "idle was tested")
    return passed("websocket-idle", f"open after {idle_s:g} s idle over {protocols}; a message "
                                    "came back")


def token_shell_result(opened: Opened) -> CheckResult:
    """`token-shell`: the admin shell WebSocket opens with the token."""
    if opened.error:
        return failed("token-shell", f"/v3/shell: {opened.error}")
    if opened.status == 101:
        return passed("token-shell", "/v3/shell upgraded (101) with the token")
    if opened.status in (401, 403):
        return failed("token-shell", f"/v3/shell answered {opened.status}: the token is not an "
                                     "admin's, or it did not reach the server")
    return failed("token-shell", f"/v3/shell answered {opened.status} instead of 101")
