"""bench/server's figures and how they are printed (pure: numbers in, text out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report import TargetFigures, format_columns

SETTINGS = "/v3/settings"
HEALTHZ = "/healthz"
ENDPOINTS = (SETTINGS, HEALTHZ)
LEVELS = (0, 3)
FINAL_PREFIX = "audit level-3 throughput ratio on /v3/settings:"


@dataclass(frozen=True)
class Cell:
    """One endpoint at one audit level, with every measured run."""

    endpoint: str
    level: int
    figures: TargetFigures  # cpu_us_per_request: the server's (all threads), per run


def new_cell(endpoint: str, level: int) -> Cell:
    """An empty cell; its runs are appended as they are measured."""
    return Cell(endpoint, level, TargetFigures(f"{endpoint} level {level}", ""))


def throughput_ratio(level3: Cell, level0: Cell) -> float:
    """Median requests/s at level 3 over level 0 (NaN when level 0 has no figure)."""
    base = level0.figures.requests_per_s
    return level3.figures.requests_per_s / base if base and not math.isnan(base) else math.nan


def format_table(cells: list[Cell]) -> list[str]:
    """Endpoint x level: median requests/s, p99 and server CPU/request; errors of all runs."""
    header = ("endpoint", "AUDIT_LEVEL", "requests/s", "p99 ms", "server CPU us/req", "errors")
    rows = [
        (c.endpoint, str(c.level), f"{c.figures.requests_per_s:,.0f}",
         f"{c.figures.p99_ms:.2f}", f"{c.figures.cpu_us:.0f}", str(c.figures.errors))
        for c in cells
    ]
    return format_columns(header, rows)


def format_runs(cell: Cell) -> str:
    """Every run's requests/s and p99, to show the spread behind the median."""
    runs = ", ".join(f"{r.requests_per_s:,.0f} ({r.p99_ms:.1f} ms)" for r in cell.figures.runs)
    if cell.figures.cpu_us_per_request:
        runs += "; server CPU us/req " + ", ".join(
            f"{x:.0f}" for x in cell.figures.cpu_us_per_request)
    return f"runs {cell.endpoint} level {cell.level}: {runs}"


def overhead_line(endpoint: str, ratio: float) -> str:
    """`overhead level3 vs level0 on <endpoint>: NN% (ratio 0.NN)`; negative = level 3 faster."""
    return f"overhead level3 vs level0 on {endpoint}: {(1 - ratio) * 100:.0f}% (ratio {ratio:.2f})"


def cpu_line(endpoint: str, level3: Cell, level0: Cell) -> str:
    """Server CPU time per request at both levels: less sensitive to other load than req/s."""
    cpu0, cpu3 = level0.figures.cpu_us, level3.figures.cpu_us
    extra = (cpu3 / cpu0 - 1) * 100 if cpu0 else math.nan
    return (f"server CPU per request on {endpoint}: level 0 {cpu0:.0f} us, "
            f"level 3 {cpu3:.0f} us ({extra:+.0f}%)")


def final_line(ratio: float) -> str:
    """The last line of the output."""
    return f"{FINAL_PREFIX} {ratio:.2f}"


def by_key(cells: list[Cell]) -> dict[tuple[str, int], Cell]:
    """Cells indexed by (endpoint, level)."""
    return {(c.endpoint, c.level): c for c in cells}


def overhead_lines(cells: list[Cell]) -> tuple[list[str], float]:
    """Per endpoint (settings first) the CPU and the overhead line; the /v3/settings ratio."""
    index = by_key(cells)
    lines = [cpu_line(endpoint, index[endpoint, 3], index[endpoint, 0]) for endpoint in ENDPOINTS]
    settings_ratio = math.nan
    for endpoint in ENDPOINTS:
        ratio = throughput_ratio(index[endpoint, 3], index[endpoint, 0])
        lines.append(overhead_line(endpoint, ratio))
        if endpoint == SETTINGS:
            settings_ratio = ratio
    return lines, settings_ratio


def format_size(size_bytes: int) -> str:
    """Bytes as MiB with one decimal."""
    return f"{size_bytes / 2**20:.1f} MiB"
