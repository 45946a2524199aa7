"""Upstreams: named pools of endpoints with balancing, keep-alive pools and health state.

One instance per worker process; nothing here is shared between workers. Health checkers and
the request path change an endpoint's health only through `mark_up`/`mark_down`/`note_*`.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Protocol

from corral.config.lb import Upstream as UpstreamConfig
from corral.config.lb import split_host_port

if TYPE_CHECKING:
    from collections.abc import Callable


class PooledConnection(Protocol):
    """What the keep-alive pool needs from an upstream connection."""

    idle_since: float
    pooled: bool  # in an endpoint's idle list now

    def is_usable(self) -> bool: ...
    def close(self) -> None: ...


class Endpoint:
    """One `host:port` of an upstream, with its idle connections and health."""

    __slots__ = (
        "_clock",
        "active",
        "address",
        "consecutive_failures",
        "ejected_until",
        "host",
        "idle",
        "idle_timeout",
        "keepalive",
        "port",
        "up",
        "upstream_name",
    )

    def __init__(
        self,
        address: str,
        upstream_name: str,
        keepalive: int,
        clock: Callable[[], float],
        idle_timeout: float = 60.0,
    ) -> None:
        self.address = address
        self.host, self.port = split_host_port(address)
        self.upstream_name = upstream_name
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout  # close pooled connections idle longer (before the
        # upstream's own keep-alive timeout closes them under a request)
        self.idle: list[PooledConnection] = []
        self.active = 0  # requests in flight (least_conn uses it)
        self.up = True  # the active health check's verdict (True until it says otherwise)
        self.ejected_until = 0.0  # passive ejection after connect failures
        self.consecutive_failures = 0
        self._clock = clock

    def available(self, now: float) -> bool:
        """Whether new requests may go here."""
        return self.up and now >= self.ejected_until

    # -- keep-alive pool -------------------------------------------------------------------
    def take_idle(self) -> PooledConnection | None:
        """The most recently used idle connection that is still open, or None."""
        idle = self.idle
        oldest_allowed = self._clock() - self.idle_timeout
        while idle:
            conn = idle.pop()
            conn.pooled = False
            if conn.is_usable() and conn.idle_since >= oldest_allowed:
                return conn
            conn.close()
        return None

    def give_back(self, conn: PooledConnection) -> None:
        """Keep `conn` for reuse, or close it when the pool is full."""
        if len(self.idle) < self.keepalive:
            conn.idle_since = self._clock()
            conn.pooled = True
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: PooledConnection) -> None:
        """Drop a connection that closed while idle (one taken out of the pool, or never in
        it, costs no search)."""
        if conn.pooled:
            conn.pooled = False
            self.idle.remove(conn)

    def close_stale(self) -> None:
        """Close pooled connections idle longer than `idle_timeout` (oldest are first)."""
        oldest_allowed = self._clock() - self.idle_timeout
        idle = self.idle
        while idle and idle[0].idle_since < oldest_allowed:
            stale = idle.pop(0)
            stale.pooled = False
            stale.close()

    def close_idle(self) -> None:
        """Close every idle connection (endpoint went down, or shutdown)."""
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.pooled = False
            conn.close()

    # -- health ------------------------------------------------------------------------------
    def note_connect_failure(
        self, max_fails: int, fail_timeout: float, active_checks: bool
    ) -> None:
        """A connect attempt failed: eject after `max_fails` in a row."""
        self.consecutive_failures += 1
        if self.consecutive_failures >= max_fails:
            self.close_idle()
            if active_checks:
                self.up = False  # the active check re-admits it after `rise` successes
            else:
                self.ejected_until = self._clock() + fail_timeout

    def note_success(self) -> None:
        """A connection was established (or a response came back)."""
        self.consecutive_failures = 0

    def mark(self, up: bool) -> None:
        """The active health check's verdict."""
        self.up = up
        if up:
            self.ejected_until = 0.0
            self.consecutive_failures = 0
        else:
            self.close_idle()


class UpstreamPool:
    """A named upstream: endpoints plus the balancing policy."""

    __slots__ = ("_rr", "config", "endpoints", "least_conn", "name")

    def __init__(self, name: str, config: UpstreamConfig, clock: Callable[[], float]) -> None:
        self.name = name
        self.config = config
        self.endpoints = [
            Endpoint(a, name, config.keepalive, clock, config.keepalive_timeout)
            for a in config.servers
        ]
        self.least_conn = config.balance == "least_conn"
        self._rr = itertools.count()

    def choose(self, now: float, exclude: tuple[Endpoint, ...] = ()) -> Endpoint | None:
        """The next endpoint by the policy among available ones not in `exclude`. When no
        endpoint at all is available (the checks marked every one down), among every one not
        in `exclude`: the checks pick among endpoints, they never leave the pool with none
        (panic routing, as Envoy's; NGINX likewise forgets the failures once every server
        failed). None when every candidate is in `exclude`."""
        start = next(self._rr) % len(self.endpoints)
        chosen = self._choose(now, exclude, start, healthy=True)
        if chosen is None and not self.any_available(now):
            chosen = self._choose(now, exclude, start, healthy=False)
        return chosen

    def any_available(self, now: float) -> bool:
        """Whether the checks leave at least one endpoint for new requests."""
        return any(ep.available(now) for ep in self.endpoints)

    def _choose(
        self, now: float, exclude: tuple[Endpoint, ...], start: int, healthy: bool
    ) -> Endpoint | None:
        endpoints = self.endpoints
        count = len(endpoints)
        if not self.least_conn:
            for i in range(count):
                ep = endpoints[(start + i) % count]
                if (not healthy or ep.available(now)) and ep not in exclude:
                    return ep
            return None
        best: Endpoint | None = None
        for i in range(count):
            ep = endpoints[(start + i) % count]
            if (
                (not healthy or ep.available(now))
                and ep not in exclude
                and (best is None or ep.active < best.active)
            ):
                best = ep
        return best

    @property
    def active_checks(self) -> bool:
        """Whether an active health check runs for this upstream."""
        return self.config.health_check is not None
