"""What a draining worker still waits for, as one error-log line (pure): a reload whose previous
workers do not exit says why — requests in flight, tunnels (WebSockets, any Upgrade), idle
connections, TLS handshakes — instead of only taking long."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

DRAIN_REPORT_FIRST_S = 10.0  # a drain still going after this is reported, then every
DRAIN_REPORT_EVERY_S = 30.0  # this long until it ends


class DrainingConnection(Protocol):
    """What the report reads of a client connection (HTTP/1.1 or HTTP/2)."""

    @property
    def exchange(self) -> Any: ...

    @property
    def tunnel(self) -> Any: ...


def drain_report(clients: Iterable[DrainingConnection], handshakes: int, elapsed_s: float) -> str:
    """`draining for 12s: 3 connections left (…)`: counts of what keeps the worker alive."""
    requests = tunnels = idle = 0
    for client in clients:
        if client.tunnel is not None:
            tunnels += 1
        elif client.exchange is not None:
            requests += 1
        else:
            idle += 1
    total = requests + tunnels + idle
    return (f"draining for {elapsed_s:.0f}s: {total} connection(s) left ({requests} with a "
            f"request in flight, {tunnels} tunnel(s) such as WebSockets, {idle} idle or sending "
            f"a request head) and {handshakes} TLS handshake(s) in progress")


def next_report_at(started: float, now: float) -> float:
    """When the next report of a drain that started at `started` is due (loop time)."""
    if now < started + DRAIN_REPORT_FIRST_S:
        return started + DRAIN_REPORT_FIRST_S
    periods = int((now - started - DRAIN_REPORT_FIRST_S) // DRAIN_REPORT_EVERY_S) + 1
    return started + DRAIN_REPORT_FIRST_S + periods * DRAIN_REPORT_EVERY_S
