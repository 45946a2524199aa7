"""Throughput against the number of connections: `wrk -t1 -cN` at each N of the curve (10, 64,
500, 2000 by default) against every proxy, in the same run as the main table; one run per point
and proxy, the proxies interleaved at each point. Pure formatting here (the table by
bench.report), plus the one function that runs it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import format_columns
from bench.wrk import WrkResult, run_wrk

if TYPE_CHECKING:
    from bench.targets import Target

DEFAULT_CURVE = (10, 64, 500, 2000)
PEERS = ("nginx-tuned", "haproxy")


@dataclass
class Curve:
    """One proxy's curve."""

    name: str
    points: dict[int, WrkResult] = field(default_factory=dict)

    def rate(self, connections: int) -> float:
        """Requests/s at that connection count (nan when not measured)."""
        result = self.points.get(connections)
        return result.requests_per_s if result is not None else math.nan


def parse_curve(text: str) -> tuple[int, ...]:
    """`10,64,500,2000` → (10, 64, 500, 2000); "" or "0" → () (no curve)."""
    text = text.strip()
    if text in ("", "0"):
        return ()
    values = tuple(int(part) for part in text.split(","))
    if any(v < 1 for v in values):
        raise ValueError("every connection count must be at least 1")
    return values


def measure_curve(
    targets: Sequence[Target],
    counts: Sequence[int],
    *,
    duration_s: int,
    script: Path,
    cpu: int | None,
    say: Callable[[str], None],
) -> list[Curve]:
    """wrk at every connection count against every proxy (the targets with an HTTPS port)."""
    proxies = [t for t in targets if t.https_port is not None]
    curves = {t.figures.name: Curve(t.figures.name) for t in proxies}
    for connections in counts:
        for target in proxies:
            result = run_wrk(target.url, duration_s, connections, script, cpu)
            curves[target.figures.name].points[connections] = result
            say(
                f"curve -c{connections} {target.figures.name}: {result.requests_per_s:,.0f} "
                f"req/s, p99 {result.p99_ms:.2f} ms"
                + (f", {result.error_note}" if result.errors else "")
            )
    return list(curves.values())


def curve_report(curves: Sequence[Curve], counts: Sequence[int], duration_s: int) -> list[str]:
    """A table of requests/s (p99 ms) per proxy and connection count, then corral's ratios."""
    if not curves or not counts:
        return []
    header = ["connections", *(c.name for c in curves)]
    rows = []
    for n in counts:
        cells = [str(n)]
        for curve in curves:
            result = curve.points.get(n)
            cells.append(
                "-" if result is None else f"{result.requests_per_s:,.0f} ({result.p99_ms:.1f})"
            )
        rows.append(cells)
    lines = [
        "",
        f"connection-count curve: wrk -t1 -cN, {duration_s} s per point, one run each; "
        "requests/s (p99 ms)",
        *format_columns(header, rows),
    ]
    by_name = {c.name: c for c in curves}
    corral = by_name.get("corral-lb")
    if corral is None:
        return lines
    for peer in PEERS:
        other = by_name.get(peer)
        if other is None:
            continue
        ratios = ", ".join(
            f"{n}: {_ratio(corral.rate(n), other.rate(n))}" for n in counts
        )
        lines.append(f"curve ratio corral/{peer} by connections: {ratios}")
    return lines


def _ratio(numerator: float, denominator: float) -> str:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return "nan"
    return f"{numerator / denominator:.2f}"
