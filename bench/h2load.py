"""HTTP/2 runs of bench/lb_vs_nginx: `h2load` (nghttp2) with many streams on a few TLS
connections against each proxy (nginx listens `ssl http2` as in Rancher's example NGINX
configuration), in the same run as the wrk measurements. Pure parsing and formatting here, plus
the one function that runs it.

Runs are counted in requests, not seconds: nginx ends an HTTP/2 connection with GOAWAY after
`keepalive_requests` (1000 by default; Rancher's example sets nothing) and h2load does not
reconnect, so a timed run would measure nginx idling. Each connection makes at most 1000
requests."""

from __future__ import annotations

import math
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil

from bench.processes import BenchError, run_child
from bench.report import format_columns

if TYPE_CHECKING:
    from bench.targets import Target

H2_CONNECTIONS = 16
H2_STREAMS = 32  # concurrent streams per connection (h2load -m)
NGINX_REQUESTS_PER_CONNECTION = 1000  # nginx's default keepalive_requests
WARMUP_REQUESTS_PER_CONNECTION = 100
PEERS = ("nginx-rancher-example", "nginx-tuned", "haproxy")

_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored"
)
_STATUSES = re.compile(r"status codes: (\d+) 2xx")
_REQUEST_TIME = re.compile(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class H2Result:
    """One h2load run."""

    requests: int
    requests_per_s: float
    mean_ms: float
    errors: int  # failed requests (e.g. in flight when nginx's per-connection limit hit) + non-2xx


@dataclass
class H2Figures:
    """Every h2load run of one proxy."""

    name: str
    runs: list[H2Result] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        """Median requests/s."""
        return statistics.median(r.requests_per_s for r in self.runs) if self.runs else math.nan

    @property
    def mean_ms(self) -> float:
        """Median of the runs' mean request times."""
        return statistics.median(r.mean_ms for r in self.runs) if self.runs else math.nan

    @property
    def cpu_us(self) -> float:
        """Median worker CPU time per request, µs."""
        values = self.cpu_us_per_request
        return statistics.median(values) if values else math.nan

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


def requests_per_connection(duration_s: int) -> int:
    """How many requests each connection makes: 100 per second of the wrk runs' duration, at
    most nginx's keepalive_requests."""
    return min(NGINX_REQUESTS_PER_CONNECTION, 100 * duration_s)


def h2load_argv(url: str, per_connection: int) -> list[str]:
    """h2load: one thread, H2_CONNECTIONS connections x H2_STREAMS streams, `per_connection`
    requests on each."""
    total = H2_CONNECTIONS * per_connection
    return ["h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", f"-n{total}", url]


def parse_h2load_output(text: str) -> H2Result:
    """The figures of h2load's summary; BenchError when it has none or spoke another protocol."""
    finished = _FINISHED.search(text)
    requests = _REQUESTS.search(text)
    statuses = _STATUSES.search(text)
    if not (finished and requests and statuses):
        raise BenchError(f"h2load printed no summary; its output:\n{text[-2000:]}")
    if "Application protocol: h2" not in text:
        raise BenchError(f"h2load did not negotiate HTTP/2; its output:\n{text[-2000:]}")
    _total, _done, succeeded, failed, _errored = (int(x) for x in requests.groups())
    timing = _REQUEST_TIME.search(text)
    mean_ms = float(timing.group(1)) * _UNIT_MS[timing.group(2)] if timing else math.nan
    return H2Result(
        requests=succeeded,
        requests_per_s=float(finished.group(1)),
        mean_ms=mean_ms,
        # `errored` is a part of `failed`; a success with a status other than 2xx is an error too
        errors=failed + max(0, succeeded - int(statuses.group(1))),
    )


def run_h2load(url: str, per_connection: int, cpu: int | None) -> H2Result:
    """Run h2load once (pinned to `cpu` when given)."""
    argv = h2load_argv(url, per_connection)
    limit = 120
    try:
        done = run_child(argv, cpu, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"h2load against {url} did not finish in {limit}s") from exc
    if done.returncode != 0:
        raise BenchError(
            f"h2load against {url} failed with status {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )
    return parse_h2load_output(done.stdout)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure_h2(
    targets: Sequence[Target],
    *,
    duration_s: int,
    runs: int,
    warmup: bool,
    cpu: int | None,
    say: Callable[[str], None],
) -> list[H2Figures]:
    """h2load against every proxy (the targets with an HTTPS port): a short warm-up run each,
    then the measured runs interleaved."""
    if shutil.which("h2load") is None:
        raise BenchError("`h2load` is not installed; run scripts/setup (or bench/lb_vs_nginx)")
    proxies = [t for t in targets if t.https_port is not None]
    figures = {t.figures.name: H2Figures(t.figures.name) for t in proxies}
    per_connection = requests_per_connection(duration_s)
    if warmup:
        for target in proxies:
            say(f"h2load warm-up {target.figures.name}")
            run_h2load(target.url, WARMUP_REQUESTS_PER_CONNECTION, cpu)
    for run in range(1, runs + 1):
        for target in proxies:
            name = target.figures.name
            before = _cpu_seconds(target.worker_pid)
            result = run_h2load(target.url, per_connection, cpu)
            used = _cpu_seconds(target.worker_pid) - before
            figures[name].runs.append(result)
            if result.requests:
                figures[name].cpu_us_per_request.append(used / result.requests * 1e6)
            say(
                f"h2load run {run}/{runs} {name}: {result.requests_per_s:,.0f} req/s, "
                f"mean {result.mean_ms:.2f} ms, worker CPU {used:.1f} s"
                + (f", {result.errors} errors" if result.errors else "")
            )
    return list(figures.values())


def h2_report(figures: Sequence[H2Figures], duration_s: int) -> list[str]:
    """The HTTP/2 table and one ratio line per nginx peer (`h2 ratio corral/<peer>: N.NN`)."""
    header = ("h2load target", "requests/s", "mean ms", "cpu us/req", "errors")
    rows = [
        (
            f"h2 {f.name}",
            f"{f.requests_per_s:,.0f}",
            f"{f.mean_ms:.2f}",
            f"{f.cpu_us:.1f}",
            str(f.errors),
        )
        for f in figures
    ]
    per_connection = requests_per_connection(duration_s)
    lines = [
        "",
        f"HTTP/2: h2load -t1 -c{H2_CONNECTIONS} -m{H2_STREAMS} "
        f"-n{H2_CONNECTIONS * per_connection} (GET /, {H2_CONNECTIONS * H2_STREAMS} streams in "
        f"flight, {per_connection} requests per connection: nginx's keepalive_requests ends a "
        "connection at 1000), median of the runs",
        *format_columns(header, rows),
    ]
    by_name = {f.name: f for f in figures}
    corral = by_name.get("corral-lb")
    for peer in PEERS:
        other = by_name.get(peer)
        if corral is None or other is None:
            continue
        ratio = corral.requests_per_s / other.requests_per_s if other.requests_per_s else math.nan
        lines.append(f"h2 ratio corral/{peer}: {ratio:.2f}")
    return lines
