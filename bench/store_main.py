"""`bench/store`: what the store backend costs through the API, embedded SQLite vs a 3-member
etcd cluster (Rancher's single-node vs HA install, on one machine).

For each backend, wrk measures API writes (`PUT /v3/settings/ui-pl`, one store write each) and
reads (`GET /v3/clusters/<id>`: the token, its user and the cluster read from the store) through
one server's plain-HTTP port; then the watch latency: a write through server A until its event
arrives on a `/v3/subscribe` held on server B (with SQLite, A and B are the one server). Prints
progress on stderr; the report on stdout ends with `etcd/sqlite: writes 0.NN, reads 0.NN`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import BenchError, run_main
from bench.report import format_columns
from bench.store_stack import (
    BenchServer,
    create_cluster,
    login,
    request,
    start_etcd_pair,
    start_sqlite,
)
from bench.store_watch import SETTING, WatchLatency, measure_watch_latency
from bench.wrk import DONE_SCRIPT, WrkResult, run_wrk

FULL = {"duration": 5, "runs": 3, "warmup": 2, "samples": 300}
QUICK = {"duration": 1, "runs": 1, "warmup": 1, "samples": 20}
DEFAULT_CONNECTIONS = 16
WRITE, READ = "writes", "reads"


@dataclass(frozen=True)
class Options:
    """What the command line asked for, with --quick and the defaults resolved."""

    duration: int
    runs: int
    warmup: int
    connections: int
    samples: int


@dataclass
class Backend:
    """One backend's figures: wrk runs per operation and the watch latency."""

    name: str
    runs: dict[str, list[WrkResult]] = field(default_factory=lambda: {WRITE: [], READ: []})
    watch: WatchLatency | None = None
    watch_path: str = ""

    def per_s(self, operation: str) -> float:
        """Median requests/s of the operation's runs."""
        return statistics.median(r.requests_per_s for r in self.runs[operation])

    def p99_ms(self, operation: str) -> float:
        """Median p99 latency of the operation's runs."""
        return statistics.median(r.p99_ms for r in self.runs[operation])

    def errors(self) -> int:
        """Errors wrk counted over every run."""
        return sum(r.errors for runs in self.runs.values() for r in runs)


def parse_args(argv: list[str] | None) -> Options:
    """Read the command line; --quick changes the defaults, explicit options still win."""
    parser = argparse.ArgumentParser(
        prog="bench/store",
        description="API writes/s, reads/s and watch latency: SQLite vs a 3-member etcd cluster.",
    )
    parser.add_argument("--duration", type=int, help="seconds per measured wrk run (default 5)")
    parser.add_argument("--runs", type=int, help="measured runs per operation; median "
                        "(default 3)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per operation "
                        "(default 2)")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                        help=f"wrk keep-alive connections (default {DEFAULT_CONNECTIONS})")
    parser.add_argument("--samples", type=int, help="watch-latency samples per backend "
                        "(default 300)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run of 1 s after 1 s of warm-up, 20 samples")
    parser.add_argument("--no-setup", action="store_true",
                        help="skip scripts/setup (handled by the wrapper)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL

    def pick(name: str) -> int:
        value = getattr(args, name)
        return int(value if value is not None else base[name])

    options = Options(pick("duration"), pick("runs"), pick("warmup"), args.connections,
                      pick("samples"))
    for name in ("duration", "runs", "connections", "samples"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(options, name)}")
    if options.warmup < 0:
        parser.error(f"--warmup must not be negative, not {options.warmup}")
    return options


def _say(message: str) -> None:
    print(f"bench/store: {message}", file=sys.stderr, flush=True)


def _etcd_version() -> str:
    try:
        done = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=10,
                              check=False)
    except OSError:
        return "etcd ?"
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "etcd ?"


def wrk_scripts(directory: Path, token: str, cluster_id: str) -> dict[str, tuple[str, Path]]:
    """Per operation: (path to request, wrk Lua script with method, body and headers)."""
    common = (f'wrk.headers["Authorization"] = "Bearer {token}"\n'
              'wrk.headers["X-Forwarded-Proto"] = "https"\n')
    write = directory / "write.lua"
    read = directory / "read.lua"
    for path in (write, read):
        path.touch(mode=0o600)
    write.write_text(common + 'wrk.method = "PUT"\nwrk.body = \'{"value":"bench"}\'\n'
                     'wrk.headers["Content-Type"] = "application/json"\n' + DONE_SCRIPT)
    read.write_text(common + DONE_SCRIPT)
    return {WRITE: (f"/v3/settings/{SETTING}", write), READ: (f"/v3/clusters/{cluster_id}", read)}


def prepare(server: BenchServer, password: str, directory: Path) -> tuple[str, dict[
    str, tuple[str, Path]
]]:
    """Log in, make the cluster to read, check both measured requests answer; the token and
    the wrk scripts."""
    token = login(server, password)
    cluster_id = create_cluster(server, token, "bench-read")
    scripts = wrk_scripts(directory, token, cluster_id)
    for operation, (path, _) in scripts.items():
        body: dict[str, object] | None = {"value": "bench"} if operation == WRITE else None
        method = "PUT" if operation == WRITE else "GET"
        status, text = request(server, method, path, body, token)
        if status != 200:
            raise BenchError(f"{method} {path} answered {status} {text[:200]!r} before wrk")
    return token, scripts


def measure(backend: Backend, server: BenchServer, scripts: dict[str, tuple[str, Path]],
            options: Options) -> None:
    """Warm up each operation, then alternate the measured runs of writes and reads."""
    for operation, (path, script) in scripts.items():
        if options.warmup:
            _say(f"{backend.name}: warm-up {operation} ({options.warmup} s)")
            run_wrk(server.base_url + path, options.warmup, options.connections, script, None)
    for run in range(1, options.runs + 1):
        for operation, (path, script) in scripts.items():
            result = run_wrk(server.base_url + path, options.duration, options.connections,
                             script, None)
            backend.runs[operation].append(result)
            _say(f"{backend.name} run {run}/{options.runs} {operation}: "
                 f"{result.requests_per_s:,.0f}/s, p99 {result.p99_ms:.1f} ms"
                 + (f", {result.error_note}" if result.errors else ""))


def measure_sqlite(work: Path, options: Options) -> Backend:
    """The embedded store: one server."""
    backend = Backend("sqlite")
    with contextlib.ExitStack() as stack:
        _say("sqlite: starting corral server")
        server, password = start_sqlite(stack, work)
        token, scripts = prepare(server, password, work / "sqlite")
        measure(backend, server, scripts, options)
        _say(f"sqlite: watch latency, {options.samples} samples (one server)")
        backend.watch = measure_watch_latency(server.base_url, server.base_url, token,
                                              options.samples)
        backend.watch_path = "A → A (one server)"
    return backend


def measure_etcd(work: Path, options: Options) -> Backend:
    """The 3-member etcd cluster: API load on server A, the watch on server B."""
    backend = Backend("etcd")
    with contextlib.ExitStack() as stack:
        _say("etcd: starting a 3-member etcd cluster and two corral servers")
        (a, b), password = start_etcd_pair(stack, work)
        token, scripts = prepare(a, password, work / "etcd-server-A")
        measure(backend, a, scripts, options)
        _say(f"etcd: watch latency, {options.samples} samples (write on A, event on B)")
        backend.watch = measure_watch_latency(a.base_url, b.base_url, token, options.samples)
        backend.watch_path = "A → B"
    return backend


def report_lines(sqlite: Backend, etcd: Backend, options: Options) -> list[str]:
    """The table (medians), the watch latencies and the ratios; the ratio line last."""
    rows = [
        ("API writes/s (PUT setting)", f"{sqlite.per_s(WRITE):,.0f}", f"{etcd.per_s(WRITE):,.0f}",
         f"{etcd.per_s(WRITE) / sqlite.per_s(WRITE):.2f}"),
        ("API reads/s (GET cluster)", f"{sqlite.per_s(READ):,.0f}", f"{etcd.per_s(READ):,.0f}",
         f"{etcd.per_s(READ) / sqlite.per_s(READ):.2f}"),
        ("write p99 ms (under load)", f"{sqlite.p99_ms(WRITE):.1f}", f"{etcd.p99_ms(WRITE):.1f}",
         f"{etcd.p99_ms(WRITE) / sqlite.p99_ms(WRITE):.2f}"),
        ("read p99 ms (under load)", f"{sqlite.p99_ms(READ):.1f}", f"{etcd.p99_ms(READ):.1f}",
         f"{etcd.p99_ms(READ) / sqlite.p99_ms(READ):.2f}"),
    ]
    for q in (50, 99):
        s_ms = sqlite.watch.percentile(q) if sqlite.watch else float("nan")
        e_ms = etcd.watch.percentile(q) if etcd.watch else float("nan")
        rows.append((f"watch latency p{q} ms", f"{s_ms:.1f}", f"{e_ms:.1f}", f"{e_ms / s_ms:.2f}"))
    header = ("", "sqlite", "etcd (3 members)", "etcd/sqlite")
    errors = sqlite.errors() + etcd.errors()
    return [
        "", *format_columns(header, rows, rule=False), "",
        f"wrk: {options.connections} connections, {options.runs} run(s) of {options.duration} s "
        "per operation (medians); requests to one server's HTTP port, forwarded-as-HTTPS.",
        f"watch latency: {options.samples} sequential writes each, write sent → event received; "
        f"sqlite {sqlite.watch_path}, etcd {etcd.watch_path}.",
        *([f"wrk counted {errors} errors"] if errors else []),
        f"load average at end {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores shared by the "
        "etcd members, the servers and wrk.",
        f"etcd/sqlite: writes {etcd.per_s(WRITE) / sqlite.per_s(WRITE):.2f}, "
        f"reads {etcd.per_s(READ) / sqlite.per_s(READ):.2f}",
    ]


def run(options: Options) -> list[str]:
    """Measure both backends in turn (each stopped before the next starts)."""
    if shutil.which("wrk") is None:
        raise BenchError("`wrk` is not installed; run scripts/setup (or bench/store)")
    header = [
        f"bench/store — {platform.node()}, {os.cpu_count()} cores, "
        f"corral {importlib.metadata.version('corral')}, Python {platform.python_version()}, "
        f"{_etcd_version()}",
    ]
    with tempfile.TemporaryDirectory(prefix="corral-bench-store-") as tmp:
        work = Path(tmp)
        sqlite = measure_sqlite(work, options)
        etcd = measure_etcd(work, options)
    return header + report_lines(sqlite, etcd, options)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when a step failed, 130 on Ctrl-C."""
    options = parse_args(argv)
    return run_main(lambda: run(options), _say)


if __name__ == "__main__":
    sys.exit(main())
