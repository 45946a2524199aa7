"""`bench/server`: the cost of the API audit log, measured through `corral lb`.

For AUDIT_LEVEL 0 and then 3, a fresh `corral server` behind `corral lb` (HTTPS, one worker, no
access log); wrk measures authenticated `GET /v3/settings` and `GET /healthz` (not audited: the
noise floor). Prints progress on stderr; the report on stdout ends with
`audit level-3 throughput ratio on /v3/settings: 0.NN`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.configs import CertFiles
from bench.processes import BenchError, run_main
from bench.server_report import (
    ENDPOINTS,
    HEALTHZ,
    LEVELS,
    SETTINGS,
    Cell,
    by_key,
    final_line,
    format_runs,
    format_size,
    format_table,
    new_cell,
    overhead_lines,
)
from bench.server_stack import (
    AuditCount,
    Stack,
    audit_stats,
    check_endpoints,
    count_audit_records,
    cpu_seconds,
    login,
    new_password,
    start_stack,
)
from bench.targets import client_context, make_certificate
from bench.wrk import DONE_SCRIPT, run_wrk

FULL = {"duration": 8, "runs": 3, "warmup": 3}
QUICK = {"duration": 1, "runs": 1, "warmup": 1}
DEFAULT_CONNECTIONS = 32


@dataclass(frozen=True)
class Options:
    """What the command line asked for, with --quick and the defaults resolved."""

    duration: int
    runs: int
    warmup: int
    connections: int
    pin: bool
    interleave: bool
    server_src: Path | None = None  # run corral server from this tree's src/ instead


def parse_args(argv: list[str] | None) -> Options:
    """Read the command line; --quick changes the defaults, explicit options still win."""
    parser = argparse.ArgumentParser(
        prog="bench/server",
        description="corral server's audit-log overhead (AUDIT_LEVEL 0 vs 3) through corral lb.",
    )
    parser.add_argument("--duration", type=int, help="seconds per measured wrk run (default 8)")
    parser.add_argument("--runs", type=int, help="measured runs per endpoint and level; median "
                        "(default 3)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per endpoint and level "
                        "(default 3)")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                        help=f"wrk keep-alive connections (default {DEFAULT_CONNECTIONS})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run of 1 s after 1 s of warm-up")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server to one CPU and corral lb + wrk to another")
    parser.add_argument("--interleave", action="store_true",
                        help="run both levels' servers at once and alternate their runs, so "
                        "changing load on a shared machine hits both alike")
    parser.add_argument("--server-src", type=Path, metavar="TREE",
                        help="run corral server from TREE/src (e.g. unpacked by `git archive "
                        "HEAD`) instead of this tree, for a before/after comparison; corral lb, "
                        "wrk and the bench stay this tree's")
    parser.add_argument("--no-setup", action="store_true",
                        help="skip scripts/setup (handled by the wrapper)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    options = Options(
        duration=args.duration if args.duration is not None else base["duration"],
        runs=args.runs if args.runs is not None else base["runs"],
        warmup=args.warmup if args.warmup is not None else base["warmup"],
        connections=args.connections,
        pin=not args.no_pin,
        interleave=args.interleave,
        server_src=args.server_src,
    )
    if options.server_src is not None and not (options.server_src / "src" / "corral").is_dir():
        parser.error(f"--server-src {options.server_src}: no src/corral there; give the top of "
                     "a corral source tree")
    for name in ("duration", "runs", "connections"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(options, name)}")
    if options.warmup < 0:
        parser.error(f"--warmup must not be negative, not {options.warmup}")
    return options


def choose_cpus(pin: bool) -> tuple[int | None, int | None]:
    """(CPU for corral server, CPU for corral lb + wrk), or no pinning on one CPU."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return None, None
    return available[0], available[-1]


def _say(message: str) -> None:
    print(f"bench/server: {message}", file=sys.stderr, flush=True)


def _tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].split(" [")[0] if text else "?"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _header(options: Options, cpus: tuple[int | None, int | None]) -> list[str]:
    server_cpu, load_cpu = cpus
    placement = (f"corral server pinned to CPU {server_cpu}, corral lb and wrk to CPU {load_cpu}"
                 if server_cpu is not None else "no CPU pinning")
    order = ("both levels' servers running, their runs interleaved" if options.interleave
             else "level 0, then level 3")
    return [
        f"corral server audit overhead: wrk -t1 -c{options.connections}, HTTPS keep-alive through "
        "corral lb (1 worker, access_log off) to a fresh corral server per AUDIT_LEVEL; "
        f"{options.runs} x {options.duration} s runs per endpoint and level (median) after a "
        f"{options.warmup} s warm-up; {order}; GET /v3/settings with Authorization: Bearer <token>",
        f"machine: {os.cpu_count()} CPUs, {placement}; load average at start {_load()}",
        *([f"corral server from {options.server_src.resolve()}/src"] if options.server_src else []),
        "versions: " + ", ".join([
            _tool_version(["wrk", "--version"]),
            f"corral {importlib.metadata.version('corral')}",
            f"Python {platform.python_version()}",
            ssl.OPENSSL_VERSION,
        ]),
    ]


def wrk_script(directory: Path, token: str) -> Path:
    """wrk's Lua script: the bearer token on every request, then the result line at the end.

    Setting `wrk.headers` at load time is what `-H` does (the request is built once), and keeps
    the token out of the process list.
    """
    path = directory / "wrk-auth.lua"  # one per level: the levels may run at once
    path.touch(mode=0o600)
    path.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n{DONE_SCRIPT}')
    return path


@dataclass
class Subject:
    """One level's running system, the wrk script per endpoint, and what wrk sent it."""

    system: Stack
    scripts: dict[str, Path]
    load_before: str
    settings_requests: int = 0  # every one must leave an audit record at level 3


def server_launcher(options: Options) -> list[str] | None:
    """How to start corral server: this tree's (None), or `--server-src`'s."""
    if options.server_src is None:
        return None
    src = options.server_src.resolve() / "src"
    return ["env", f"PYTHONPATH={src}", sys.executable, "-m", "corral.cli.main"]


def prepare(
    stack: contextlib.ExitStack, work: Path, level: int, certs: CertFiles,
    context: ssl.SSLContext, cpus: tuple[int | None, int | None], plain_script: Path,
    options: Options,
) -> Subject:
    """Start the level's server and lb, log in once, check both endpoints answer."""
    load_before = _load()
    password = new_password()
    _say(f"AUDIT_LEVEL={level}: starting corral server and corral lb")
    system = start_stack(stack, work, level, certs, password, cpus, server_launcher(options))
    token = login(system.base_url, context, password)
    check_endpoints(system.base_url, context, token)
    scripts = {SETTINGS: wrk_script(system.audit_dir.parent, token), HEALTHZ: plain_script}
    return Subject(system, scripts, load_before)


def measure(
    subjects: list[Subject], cells: dict[tuple[str, int], Cell], options: Options,
    cpu: int | None,
) -> None:
    """Warm up, then interleave the measured runs of every endpoint (and subject)."""
    for subject in subjects:
        for endpoint in ENDPOINTS if options.warmup else ():
            _say(f"AUDIT_LEVEL={subject.system.level}: warm-up {endpoint} ({options.warmup} s)")
            result = run_wrk(subject.system.base_url + endpoint, options.warmup,
                             options.connections, subject.scripts[endpoint], cpu)
            subject.settings_requests += result.requests if endpoint == SETTINGS else 0
    for run in range(1, options.runs + 1):
        for subject in subjects:
            for endpoint in ENDPOINTS:
                _measure_once(subject, endpoint, cells, options, cpu, f"{run}/{options.runs}")


def _measure_once(
    subject: Subject, endpoint: str, cells: dict[tuple[str, int], Cell], options: Options,
    cpu: int | None, label: str,
) -> None:
    server, level = subject.system.server, subject.system.level
    before = cpu_seconds(server)
    result = run_wrk(subject.system.base_url + endpoint, options.duration, options.connections,
                     subject.scripts[endpoint], cpu)
    used = cpu_seconds(server) - before
    cell = cells[endpoint, level]
    cell.figures.runs.append(result)
    cell.figures.cpu_us_per_request.append(used / max(result.requests, 1) * 1e6)
    subject.settings_requests += result.requests if endpoint == SETTINGS else 0
    _say(f"AUDIT_LEVEL={level} run {label} {endpoint}: {result.requests_per_s:,.0f} req/s, "
         f"p99 {result.p99_ms:.2f} ms, server CPU {cell.figures.cpu_us_per_request[-1]:.0f} us/req"
         + (f", {result.error_note}" if result.errors else ""))


def audit_report(level: int, count: AuditCount, stats: dict[str, int], expected: int) -> str:
    """Check the audit log against what was sent; one line for the report."""
    if level == 0:
        if count.records:
            raise BenchError(f"AUDIT_LEVEL=0 wrote {count.records} audit records; expected none")
        return "audit log at level 0: no records (as expected)"
    if count.records < expected:
        raise BenchError(f"AUDIT_LEVEL={level}: {count.records} audit records for at least "
                         f"{expected} audited requests: records were lost ({stats})")
    last = count.last_record or {}
    user = last.get("user")
    if (last.get("requestURI") != SETTINGS or last.get("responseCode") != 200
            or not isinstance(user, dict) or user.get("name") != "admin"):
        raise BenchError(f"AUDIT_LEVEL={level}: the last audit record is not an authenticated "
                         f"GET {SETTINGS} by admin answered 200: {str(last)[:300]}")
    return (f"audit log at level {level}: grew to {count.records:,} records "
            f"({format_size(count.size_bytes)} in {count.files} file(s)) for {expected:,} audited "
            f"requests counted by wrk + login + check; server counters: "
            + " ".join(f"{k}={v}" for k, v in stats.items() if k != "level"))


def run(options: Options) -> list[str]:
    """Start, measure and stop the levels (in turn, or together); returns the report's lines."""
    if shutil.which("wrk") is None:
        raise BenchError("`wrk` is not installed; run scripts/setup (or bench/server)")
    cpus = choose_cpus(options.pin)
    header = _header(options, cpus)
    cells = [new_cell(endpoint, level) for endpoint in ENDPOINTS for level in LEVELS]
    audit_lines: list[str] = []
    groups = [list(LEVELS)] if options.interleave else [[level] for level in LEVELS]
    with tempfile.TemporaryDirectory(prefix="corral-bench-server-") as tmp:
        work = Path(tmp)
        certs = make_certificate(work)
        context = client_context(certs)
        plain_script = work / "done.lua"
        plain_script.write_text(DONE_SCRIPT)
        for group in groups:
            with contextlib.ExitStack() as stack:  # stops lb, then server (flushing the log)
                subjects = [prepare(stack, work, level, certs, context, cpus, plain_script,
                                    options) for level in group]
                measure(subjects, by_key(cells), options, cpus[1])
                stats = [audit_stats(s.system.base_url, context) for s in subjects]
                load_after = _load()
            for subject, level_stats in zip(subjects, stats, strict=True):
                level, sent = subject.system.level, subject.settings_requests + 2
                count = count_audit_records(subject.system.audit_dir)
                audit_lines.append(audit_report(level, count, level_stats, sent))
                audit_lines.append(f"AUDIT_LEVEL={level} measured with load average "
                                   f"{subject.load_before} before and {load_after} after")
    return header + report_lines(cells, audit_lines)


def report_lines(cells: list[Cell], audit_lines: list[str]) -> list[str]:
    """Table, spread, audit check, overhead per endpoint; the ratio line last."""
    overheads, settings_ratio = overhead_lines(cells)
    return [
        "", *format_table(cells), "",
        *(format_runs(c) for c in cells),
        *audit_lines,
        "/healthz is not audited (only /v3, /v3-public and /meta are): its difference between "
        "levels is the noise floor.",
        f"load average at end {_load()}; other engineers may be running tests on this "
        f"{os.cpu_count()}-core machine, so the figures are noisy.",
        *overheads,
        final_line(settings_ratio),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when a step failed, 130 on Ctrl-C."""
    options = parse_args(argv)
    return run_main(lambda: run(options), _say)


if __name__ == "__main__":
    sys.exit(main())
