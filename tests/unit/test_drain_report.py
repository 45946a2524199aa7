"""The line a draining lb worker logs about what it still waits for, and when."""

from __future__ import annotations

from dataclasses import dataclass

from corral.proxy.drain_report import (
    DRAIN_REPORT_EVERY_S,
    DRAIN_REPORT_FIRST_S,
    drain_report,
    next_report_at,
)


@dataclass
class Conn:
    exchange: object = None
    tunnel: object = None


def test_the_report_counts_requests_tunnels_idle_connections_and_handshakes() -> None:
    """A tunnel counts as a tunnel even while an exchange is set; the rest by what they hold."""
    clients = [Conn(exchange=1), Conn(tunnel=1), Conn(exchange=1, tunnel=1), Conn(), Conn()]
    line = drain_report(clients, 2, 12.4)
    assert line.startswith("draining for 12s: 5 connection(s) left")
    assert "1 with a request in flight" in line
    assert "2 tunnel(s)" in line
    assert "2 idle" in line
    assert "2 TLS handshake(s)" in line


def test_reports_come_after_the_first_delay_then_at_a_steady_period() -> None:
    """First at DRAIN_REPORT_FIRST_S, then every DRAIN_REPORT_EVERY_S, never in the past."""
    first, every = DRAIN_REPORT_FIRST_S, DRAIN_REPORT_EVERY_S
    assert next_report_at(100.0, 100.0) == 100.0 + first
    assert next_report_at(100.0, 100.0 + first) == 100.0 + first + every
    assert next_report_at(100.0, 100.0 + first + every + 1) == 100.0 + first + 2 * every
