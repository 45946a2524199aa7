"""doctor's WebSocket verdicts (pure): upgraded over HTTP/1.1, over HTTP/2 where offered, and
still open after the idle period."""

from __future__ import annotations

from corral.doctor.model import Status
from corral.doctor.ws_client import Exercise, Opened
from corral.doctor.ws_logic import WsOutcome, idle_result, token_shell_result, upgrade_result

OPEN_H1 = Opened(None, status=101)
OPEN_H2 = Opened(None, status=200)
ECHOED = Exercise(echoed=True, echoed_after_idle=True)


def test_upgrade_with_an_echo_passes() -> None:
    """101 (or 200 for RFC 8441) and a message back: pass."""
    assert upgrade_result(WsOutcome("HTTP/1.1", OPEN_H1, ECHOED), diagnostics=True,
                          looped=False).status is Status.PASS
    assert upgrade_result(WsOutcome("HTTP/2", OPEN_H2, ECHOED), diagnostics=True,
                          looped=False).status is Status.PASS


def test_no_upgrade_fails_naming_upgrade_and_connection() -> None:
    """A plain answer instead of 101: Upgrade/Connection did not reach the server."""
    result = upgrade_result(WsOutcome("HTTP/1.1", Opened(None, status=404)), diagnostics=True,
                            looped=False)
    assert result.status is Status.FAIL and "instead of 101" in result.saw
    assert result.fix is not None
    assert "proxy_set_header Upgrade $http_upgrade;" in result.fix.line()


def test_a_404_from_a_server_without_diagnostics_is_not_run() -> None:
    """No diagnostic endpoints (not corral server): nothing to judge."""
    result = upgrade_result(WsOutcome("HTTP/1.1", Opened(None, status=404)), diagnostics=False,
                            looped=False)
    assert result.status is Status.SKIP


def test_a_refusal_caused_by_the_redirect_loop_is_not_failed_twice() -> None:
    """A 302/400 while the redirect-loop check failed: not run here."""
    for status in (302, 400):
        result = upgrade_result(WsOutcome("HTTP/1.1", Opened(None, status=status)),
                                diagnostics=True, looped=True)
        assert result.status is Status.SKIP


def test_http2_not_offered_is_not_run() -> None:
    """No SETTINGS_ENABLE_CONNECT_PROTOCOL (NGINX): clients use HTTP/1.1; not a failure."""
    opened = Opened(None, offered=False, error="SETTINGS_ENABLE_CONNECT_PROTOCOL not announced")
    assert upgrade_result(WsOutcome("HTTP/2", opened), diagnostics=True,
                          looped=False).status is Status.SKIP


def test_upgraded_but_no_echo_fails() -> None:
    """Upgraded, but the message never came back: fail."""
    outcome = WsOutcome("HTTP/1.1", OPEN_H1, Exercise(error="no echo within 10 s"))
    result = upgrade_result(outcome, diagnostics=True, looped=False)
    assert result.status is Status.FAIL and "no echo" in result.saw


def test_idle_closed_fails_with_the_read_timeout_fix() -> None:
    """Closed during the idle period: fail, with proxy_read_timeout and read_timeout."""
    closed = Exercise(echoed=True, closed_after_s=1.02, close_code=1006)
    result = idle_result([WsOutcome("HTTP/1.1", OPEN_H1, closed)], 3.0)
    assert result.status is Status.FAIL
    assert "closed after 1.0 s idle of 3 s" in result.saw
    assert result.fix is not None and "proxy_read_timeout 900s;" in result.fix.line()
    assert "servers[].read_timeout: 900s" in result.fix.line()


def test_idle_survived_passes_and_pings_make_it_a_warning() -> None:
    """Open through the whole silence: pass; the server's pings shortened the silence: warn."""
    outcomes = [WsOutcome("HTTP/1.1", OPEN_H1, ECHOED), WsOutcome("HTTP/2", OPEN_H2, ECHOED)]
    passed = idle_result(outcomes, 3.0)
    assert passed.status is Status.PASS and "HTTP/1.1 and HTTP/2" in passed.saw
    pinged = Exercise(echoed=True, echoed_after_idle=True, pings=3, longest_silence_s=20.0)
    warned = idle_result([WsOutcome("HTTP/1.1", OPEN_H1, pinged)], 75.0)
    assert warned.status is Status.WARN and "20.0 s" in warned.saw


def test_idle_without_an_open_websocket_is_not_run() -> None:
    """Nothing opened: the idle check is not run."""
    assert idle_result([WsOutcome("HTTP/1.1", Opened(None, status=404))], 3).status is (
        Status.SKIP)


def test_token_shell() -> None:
    """The shell upgrades with an admin's token; 403 fails."""
    assert token_shell_result(Opened(None, status=101)).status is Status.PASS
    refused = token_shell_result(Opened(None, status=403))
    assert refused.status is Status.FAIL and "admin" in refused.saw
