"""Prometheus metrics with the standard client library, in its multi-process mode.

Workers copy their `WorkerStats` into the library's metrics each tick (`Publisher.publish`);
the master's admin process serves every worker's numbers, summed, on `GET /metrics`. The
multi-process directory must be in `PROMETHEUS_MULTIPROC_DIR` before this module is imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from corral.proxy.stats import BUCKETS_S, UpstreamStats, WorkerStats

if TYPE_CHECKING:
    from corral.proxy.engine import Engine

_CLASSES = ("client_closed", "1xx", "2xx", "3xx", "4xx", "5xx")

REQUESTS = Counter(
    "corral_lb_requests", "Requests answered, by upstream and status class", ["upstream", "code"]
)
DURATION = Histogram(
    "corral_lb_request_duration_seconds",
    "Time from request head to the end of the response",
    ["upstream"],
    buckets=BUCKETS_S,
)
BYTES_SENT = Counter("corral_lb_sent_bytes", "Bytes sent to clients", ["upstream"])
BYTES_RECEIVED = Counter(
    "corral_lb_received_bytes", "Request body bytes received from clients", ["upstream"]
)
CONNECTIONS = Gauge(
    "corral_lb_client_connections", "Open client connections", multiprocess_mode="livesum"
)
TUNNELS = Gauge(
    "corral_lb_tunnels", "Open Upgrade tunnels (WebSocket, SPDY)", multiprocess_mode="livesum"
)
ENDPOINT_UP = Gauge(
    "corral_lb_endpoint_up",
    "1 when every worker considers the endpoint healthy",
    ["upstream", "endpoint"],
    multiprocess_mode="livemin",
)


class Publisher:
    """Copies one worker's plain counters into the Prometheus metrics (by difference)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._seen: dict[str, UpstreamStats] = {}

    def publish(self) -> None:
        """Bring the shared metrics up to date with this worker's counters."""
        engine = self._engine
        stats: WorkerStats = engine.stats
        for name, current in stats.upstreams.items():
            seen = self._seen.get(name)
            if seen is None:
                seen = self._seen[name] = UpstreamStats()
            for index, label in enumerate(_CLASSES):
                delta = current.by_class[index] - seen.by_class[index]
                if delta:
                    REQUESTS.labels(name, label).inc(delta)
                    seen.by_class[index] = current.by_class[index]
            self._publish_histogram(name, current, seen)
            if current.bytes_sent != seen.bytes_sent:
                BYTES_SENT.labels(name).inc(current.bytes_sent - seen.bytes_sent)
                seen.bytes_sent = current.bytes_sent
            if current.bytes_received != seen.bytes_received:
                BYTES_RECEIVED.labels(name).inc(current.bytes_received - seen.bytes_received)
                seen.bytes_received = current.bytes_received
        CONNECTIONS.set(len(engine.clients))
        TUNNELS.set(sum(1 for client in engine.clients if client.tunnel is not None))
        for pool in engine.pools.values():
            for endpoint in pool.endpoints:
                up = endpoint.available(engine.now)
                ENDPOINT_UP.labels(pool.name, endpoint.address).set(1 if up else 0)

    @staticmethod
    def _publish_histogram(name: str, current: UpstreamStats, seen: UpstreamStats) -> None:
        # Add bucket counts directly (the library keeps them per bucket, not cumulative), so a
        # tick costs one call per bucket rather than one per request.
        histogram = DURATION.labels(name)
        for index, count in enumerate(current.buckets):
            delta = count - seen.buckets[index]
            if delta:
                histogram._buckets[index].inc(delta)
                seen.buckets[index] = count
        if current.duration_sum != seen.duration_sum:
            histogram._sum.inc(current.duration_sum - seen.duration_sum)
            seen.duration_sum = current.duration_sum


def serve(address: str, port: int) -> None:
    """Serve every worker's metrics on http://address:port/metrics (blocks; admin process)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=address, registry=registry)


def worker_gone(pid: int) -> None:
    """Forget a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
