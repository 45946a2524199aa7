"""Per-worker request statistics kept as plain numbers on the hot path.

The Prometheus side (`metrics.py`) copies them into the client library's metrics once per tick,
so a request costs a few integer additions, not a metric library call each.
"""

from __future__ import annotations

from bisect import bisect_left

# Latency histogram bucket upper bounds, seconds (Prometheus' defaults, plus 30 s and 60 s).
BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)


class UpstreamStats:
    """Counters of one upstream (or "-" for requests answered by the proxy itself)."""

    __slots__ = ("buckets", "by_class", "bytes_received", "bytes_sent", "duration_sum")

    def __init__(self) -> None:
        self.by_class = [0, 0, 0, 0, 0, 0]  # index = status // 100 (0 = client left early)
        self.buckets = [0] * (len(BUCKETS_S) + 1)  # last one is +Inf
        self.duration_sum = 0.0
        self.bytes_sent = 0
        self.bytes_received = 0


class WorkerStats:
    """Every counter of one worker."""

    __slots__ = ("upstreams",)

    def __init__(self) -> None:
        self.upstreams: dict[str, UpstreamStats] = {}

    def record(self, upstream: str, status: int, seconds: float, sent: int, received: int) -> None:
        """Count one finished request."""
        stats = self.upstreams.get(upstream)
        if stats is None:
            stats = self.upstreams[upstream] = UpstreamStats()
        index = status // 100
        stats.by_class[index if 0 < index < 6 else 0] += 1
        stats.buckets[bisect_left(BUCKETS_S, seconds)] += 1
        stats.duration_sum += seconds
        stats.bytes_sent += sent
        stats.bytes_received += received
