"""One worker's proxy: listeners, upstream pools, the clock tick and its timeout sweep, logs.

Everything here lives in one event loop; workers share nothing but the listening ports.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import TYPE_CHECKING

from corral.config.lb import LbConfig
from corral.proxy.access_log import AccessLog
from corral.proxy.drain_report import drain_report, next_report_at
from corral.proxy.forwarding import TrustedProxies
from corral.proxy.health import HealthChecker
from corral.proxy.http1 import ClientConnection
from corral.proxy.http2 import Http2Connection
from corral.proxy.listener import ListenerSpec, router, tls_context
from corral.proxy.log_writer import ErrorLog, LogWriter
from corral.proxy.stats import WorkerStats
from corral.proxy.tls_listener import TlsListener
from corral.proxy.tls_transport import HandshakeCount
from corral.proxy.upstream import UpstreamPool

if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.proxy.exchange import Exchange

TLS_HANDSHAKE_TIMEOUT_S = 30.0
MAX_TICK_S = 1.0
MIN_TICK_S = 0.05
DRAIN_HANDSHAKE_LIMIT_S = 10.0  # a draining worker waits this long at most for TLS handshakes


class Engine:
    """The proxy of one worker process."""

    def __init__(self, config: LbConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.now = loop.time()
        self.clients: set[ClientConnection | Http2Connection] = set()
        self.handshakes = HandshakeCount()  # accepted TLS connections not yet in `clients`
        self.max_connections = config.worker_connections
        self.max_header_size = config.max_header_size
        self.client_header_timeout = config.client_header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.pools = {
            name: UpstreamPool(name, upstream, self.clock)
            for name, upstream in config.upstreams.items()
        }
        self.access_log = AccessLog(config.access_log)
        self.error_log = ErrorLog(LogWriter(sys.stderr.fileno()))
        self._dropped_reported = 0
        # None when empty: connections then skip the trust check entirely
        self.trusted_proxies = (
            TrustedProxies(config.trusted_proxies) if config.trusted_proxies else None
        )
        self.health = HealthChecker(list(self.pools.values()), self.error_log.notice)
        self.servers: list[asyncio.Server | TlsListener] = []
        self.stats = WorkerStats()
        self.draining = False
        self.on_tick: list[Callable[[], None]] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_s = self._tick_interval(config)

    def clock(self) -> float:
        """The engine's coarse clock (updated every tick)."""
        return self.now

    @staticmethod
    def _tick_interval(config: LbConfig) -> float:
        timeouts = [config.client_header_timeout, config.keepalive_timeout]
        for server in config.servers:
            timeouts += [server.read_timeout, server.send_timeout]
        return max(MIN_TICK_S, min(MAX_TICK_S, min(timeouts) / 4))

    async def start(self, listeners: list[tuple[ListenerSpec, socket.socket]]) -> None:
        """Serve on the given bound sockets and start health checks and the tick."""
        for spec, sock in listeners:
            route = router(spec, self.pools)
            context = tls_context(spec)

            def factory(route: object = route) -> ClientConnection:
                return ClientConnection(self, route)  # type: ignore[arg-type]

            if context is not None:
                self.servers.append(
                    TlsListener(
                        self.loop,
                        sock,
                        context,
                        factory,
                        handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S,
                        note_error=self.note_error,
                        handshakes=self.handshakes,
                    )
                )
            else:
                self.servers.append(await self.loop.create_server(factory, sock=sock))
        self.health.start()
        self._tick()

    def _tick(self) -> None:
        self.now = now = self.loop.time()
        for client in list(self.clients):
            try:
                client.check_timers(now)
            except Exception as exc:  # one broken connection must not stop the sweep
                self.note_error(f"timer check failed: {exc!r}")
                client.abort()
        for pool in self.pools.values():
            for endpoint in pool.endpoints:
                endpoint.close_stale()
        self.access_log.flush()
        self._report_dropped()
        self.error_log.flush()
        for hook in self.on_tick:
            try:
                hook()
            except Exception as exc:
                self.note_error(f"tick hook failed: {exc!r}")
        self._tick_handle = self.loop.call_later(self._tick_s, self._tick)

    def stop_accepting(self) -> None:
        """Close the listening servers (the sockets stay open in the master for new workers);
        responses from now on close their connections."""
        self.draining = True
        for server in self.servers:
            server.close()
        self.servers.clear()
        for client in list(self.clients):
            if isinstance(client, Http2Connection):
                client.announce_shutdown()  # GOAWAY: open streams finish, no new ones

    async def drain(self, timeout_s: float) -> None:
        """Reload: stop accepting, let every connection finish — requests, and WebSockets until
        they close — for at most `timeout_s`, then close what is left."""
        self.stop_accepting()
        started = self.loop.time()
        deadline = started + timeout_s
        report_at = next_report_at(started, started)
        # connections accepted just before the stop and still in their TLS handshake join
        # `clients` once it completes: they are waited for too, but a handshake that has not
        # ended DRAIN_HANDSHAKE_LIMIT_S after the stop is a stalled client, not a reason to stay
        handshakes_until = started + min(DRAIN_HANDSHAKE_LIMIT_S, timeout_s)
        while (now := self.loop.time()) < deadline and (
                self.clients or (self.handshakes.value and now < handshakes_until)):
            if now >= report_at:
                self.note_error(drain_report(self.clients, self.handshakes.value, now - started))
                report_at = next_report_at(started, now)
            await asyncio.sleep(0.05)
        await self._close_everything()

    async def shutdown(self, grace_s: float) -> None:
        """SIGTERM: stop accepting, close idle connections, finish requests in flight (at most
        `grace_s`), then close everything, tunnels included."""
        self.stop_accepting()
        for client in list(self.clients):
            if client.exchange is None and client.tunnel is None:
                client.transport.close()
        deadline = self.loop.time() + grace_s
        while self.loop.time() < deadline and any(c.exchange is not None for c in self.clients):
            await asyncio.sleep(0.05)
        await self._close_everything()

    async def _close_everything(self) -> None:
        for client in list(self.clients):
            client.abort()
        await self.health.stop()
        for pool in self.pools.values():
            for endpoint in pool.endpoints:
                endpoint.close_idle()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for hook in self.on_tick:  # a last publication of the numbers
            try:
                hook()
            except Exception as exc:
                self.note_error(f"tick hook failed: {exc!r}")
        self.access_log.close()
        self._report_dropped()
        self.error_log.flush()
        self.error_log.writer.close()

    # -- logging ---------------------------------------------------------------------------------
    def log_exchange(self, exchange: Exchange) -> None:
        """Count a finished (or abandoned) exchange and write its access-log line."""
        self.stats.record(
            exchange.pool.name if exchange.pool is not None else "-",
            exchange.status,
            time.monotonic() - exchange.started,
            exchange.bytes_sent,
            exchange.bytes_received,
        )
        if self.access_log.enabled:
            self.access_log.log(
                exchange.client.client_ip,
                exchange.method,
                exchange.path,
                "HTTP/1.0" if exchange.http10 else exchange.client.protocol,
                exchange.status,
                exchange.bytes_sent,
                exchange.endpoint_address(),
                exchange.started,
            )

    def log_rejected(self, client_ip: bytes, status: int, protocol: str = "HTTP/1.1") -> None:
        """An access-log line for input rejected before it became a request."""
        if self.access_log.enabled:
            self.access_log.log(client_ip, b"-", b"-", protocol, status, 0, "-", time.monotonic())

    def note_error(self, message: str) -> None:
        """An error-log line on stderr (rate-limited, written off the event loop)."""
        self.error_log.error(message)

    def _report_dropped(self) -> None:
        writer = self.access_log.writer
        dropped = writer.dropped_bytes if writer is not None else 0
        if dropped > self._dropped_reported:
            self.error_log.error(
                f"{dropped - self._dropped_reported} bytes of access log dropped: its output "
                "is not being read fast enough"
            )
            self._dropped_reported = dropped
