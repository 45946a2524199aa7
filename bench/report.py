"""The benchmark's figures and how they are printed (pure: numbers in, text out)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.wrk import WrkResult

RATIO_PREFIX = "ratio corral/nginx-tuned:"
MIN_IDLE_FOR_MEMORY = 1000  # fewer idle connections: no memory ratio (see _memory_ratio)


@dataclass
class TargetFigures:
    """Everything measured for one target over all runs."""

    name: str
    description: str
    runs: list[WrkResult] = field(default_factory=list)
    kib_per_connection: float | None = None
    idle_note: str = ""
    tls: str = ""
    cpu_us_per_request: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        """Median requests/s over the measured runs."""
        return statistics.median(r.requests_per_s for r in self.runs) if self.runs else math.nan

    @property
    def p99_ms(self) -> float:
        """Median of the runs' p99 latencies."""
        return statistics.median(r.p99_ms for r in self.runs) if self.runs else math.nan

    @property
    def cpu_us(self) -> float:
        """Median CPU time (user + system) the serving process spent per request, in µs."""
        values = self.cpu_us_per_request
        return statistics.median(values) if values else math.nan

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


def _kib(value: float | None) -> str:
    if value is None:
        return "-"
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def format_columns(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, rule: bool = True
) -> list[str]:
    """A fixed-width table as lines: the header, a rule of dashes (unless `rule` is false),
    then the rows; the first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    dashes = ["  ".join("-" * w for w in widths)] if rule else []
    return [line(header), *dashes, *(line(r) for r in rows)]


def format_table(targets: list[TargetFigures]) -> str:
    """A fixed-width table: target, requests/s, p99 latency, KiB/conn, CPU/request, errors."""
    header = ("target", "requests/s", "p99 ms", "KiB/conn", "cpu us/req", "errors")
    rows = [
        (
            t.name,
            f"{t.requests_per_s:,.0f}",
            f"{t.p99_ms:.2f}",
            _kib(t.kib_per_connection),
            f"{t.cpu_us:.1f}",
            str(t.errors),
        )
        for t in targets
    ]
    return "\n".join(format_columns(header, rows))


def format_runs(target: TargetFigures) -> str:
    """One line listing every run's requests/s, to show the spread behind the median."""
    runs = ", ".join(f"{r.requests_per_s:,.0f}" for r in target.runs)
    return f"{target.name}: runs {runs} req/s"


def cpu_ratio_line(corral: TargetFigures, tuned: TargetFigures) -> str:
    """nginx-tuned's CPU per request over corral's: throughput per core, less sensitive to noise."""
    ratio = tuned.cpu_us / corral.cpu_us if corral.cpu_us else math.nan
    return f"cpu-efficiency corral/nginx-tuned: {ratio:.2f} (CPU per request: nginx-tuned / corral)"


def ratio_line(corral: TargetFigures, tuned: TargetFigures) -> str:
    """The last line of the output: corral's median throughput over nginx-tuned's."""
    ratio = corral.requests_per_s / tuned.requests_per_s if tuned.requests_per_s else math.nan
    return f"{RATIO_PREFIX} {ratio:.2f}"


def _ratio(numerator: float, denominator: float) -> str:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return "nan"
    return f"{numerator / denominator:.2f}"


def _value(figure: float | None) -> float:
    return math.nan if figure is None else figure


def _memory_ratio(corral: TargetFigures, peer: TargetFigures, idle_connections: int) -> str:
    """corral / peer KiB per idle TLS connection; "n/a" under MIN_IDLE_FOR_MEMORY idle
    connections: nginx and HAProxy preallocate their connection pools, so a few hundred
    connections grow them by next to nothing and the ratio would mean nothing."""
    if idle_connections < MIN_IDLE_FOR_MEMORY:
        return (f"n/a ({idle_connections} idle connections are too few to see the peers' "
                f"memory; measure with at least {MIN_IDLE_FOR_MEMORY})")
    return _ratio(_value(corral.kib_per_connection), _value(peer.kib_per_connection))


def peer_lines(
    corral: TargetFigures, peers: list[TargetFigures], idle_connections: int = MIN_IDLE_FOR_MEMORY
) -> list[str]:
    """corral against each peer: throughput, CPU per request, p99 latency and memory per idle
    TLS connection, each as corral / peer (CPU: peer / corral, so higher is better)."""
    lines: list[str] = []
    for peer in peers:
        lines.append(
            f"corral/{peer.name}: throughput {_ratio(corral.requests_per_s, peer.requests_per_s)}"
            f", cpu-efficiency {_ratio(peer.cpu_us, corral.cpu_us)}"
            f", p99 latency {_ratio(corral.p99_ms, peer.p99_ms)}"
            f", memory per idle TLS connection {_memory_ratio(corral, peer, idle_connections)}"
        )
    return lines


def compiled_line(compiled: TargetFigures, pure: TargetFigures) -> str:
    """corral lb as it runs (compiled hot path) against itself in pure Python, same run:
    throughput and CPU per request as compiled / pure, and the runs' CPU ratios in order."""
    pairs = zip(compiled.cpu_us_per_request, pure.cpu_us_per_request, strict=False)
    per_run = ", ".join(_ratio(c, p) for c, p in pairs)
    return (
        f"corral compiled/pure: throughput {_ratio(compiled.requests_per_s, pure.requests_per_s)}"
        f", cpu us/req {_ratio(compiled.cpu_us, pure.cpu_us)} (runs: {per_run})"
    )
