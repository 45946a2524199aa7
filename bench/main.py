"""`bench/lb_vs_nginx`: requests/s, p99 latency, TLS handshakes/s, the connection-count curve,
memory per idle TLS connection and per idle WebSocket of nginx (Rancher's example NGINX
configuration), nginx (tuned), HAProxy, corral lb and the bare backend, in one run.

Prints progress on stderr; the report on stdout ends with `ratio corral/nginx-tuned: 0.NN`.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import psutil

from bench.configs import CertFiles, ProxyPorts
from bench.curve import DEFAULT_CURVE, curve_report, measure_curve, parse_curve
from bench.h2load import h2_report, measure_h2
from bench.handshake_peer import measure_peer_handshakes, peer_handshake_report
from bench.handshakes import handshake_report, measure_handshakes
from bench.idle import measure_idle_connections, raise_open_files_limit
from bench.placement import DEFAULT_PLACEMENT, PLACEMENTS, Placement, choose_placement
from bench.processes import BenchError, run_main
from bench.report import (
    TargetFigures,
    compiled_line,
    cpu_ratio_line,
    format_runs,
    format_table,
    peer_lines,
    ratio_line,
)
from bench.targets import (
    PortPicker,
    Target,
    client_context,
    make_certificate,
    probe,
    start_backend,
    start_corral_lb,
    start_haproxy,
    start_nginx_proxy,
)
from bench.two_workers import measure_two_workers, two_worker_report
from bench.wrk import DONE_SCRIPT, run_wrk
from bench.ws_idle import fd_hard_limit, measure_websockets, websocket_capacity, websocket_report
from corral import _native as native

FULL = {"duration": 10, "runs": 3, "warmup": 5, "idle_connections": 2000, "websockets": 10000}
QUICK = {"duration": 1, "runs": 1, "warmup": 1, "idle_connections": 200, "websockets": 200}
QUICK_CURVE = (10, 64)
NOFILE_HEADROOM = 1000


@dataclass(frozen=True)
class Options:
    """What the command line asked for, with --quick and the defaults resolved."""

    duration: int
    runs: int
    warmup: int
    connections: int
    idle_connections: int
    placement: str
    curve: tuple[int, ...] = DEFAULT_CURVE
    websockets: int = 0
    with_pure_python: bool = False


def parse_args(argv: list[str] | None) -> Options:
    """Read the command line; --quick changes the defaults, explicit options still win."""
    parser = argparse.ArgumentParser(
        prog="bench/lb_vs_nginx",
        description=(
            "corral lb against nginx (Rancher's example NGINX configuration as written, and "
            "tuned) and the bare backend."
        ),
    )
    parser.add_argument("--duration", type=int, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--runs", type=int, help="measured runs per target; median (default 3)")
    parser.add_argument("--warmup", type=int, help="seconds of the warm-up run (default 5)")
    parser.add_argument(
        "--connections", type=int, default=64, help="wrk keep-alive connections (default 64)"
    )
    parser.add_argument(
        "--idle-connections", type=int, help="idle TLS connections per proxy (default 2000)"
    )
    parser.add_argument(
        "--curve",
        help="connection counts of the throughput curve, comma-separated; 0 skips it "
        "(default 10,64,500,2000; 10,64 with --quick)",
    )
    parser.add_argument(
        "--websockets",
        type=int,
        help="idle WebSockets held through each proxy (default 10000, 200 with --quick; 0 skips)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 1 run of 1 s, 200 idle connections"
    )
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default=DEFAULT_PLACEMENT,
        help="CPU pinning (see docs/bench.md; default %(default)s)",
    )
    parser.add_argument(
        "--with-pure-python",
        action="store_true",
        help="also measure corral-lb-pure: corral lb with CORRAL_PURE_PYTHON=1 (its hot path "
        "not compiled), interleaved with the others",
    )
    parser.add_argument(
        "--no-setup", action="store_true", help="skip scripts/setup (handled by the wrapper)"
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    try:
        curve = (
            parse_curve(args.curve)
            if args.curve is not None
            else (QUICK_CURVE if args.quick else DEFAULT_CURVE)
        )
    except ValueError as exc:
        parser.error(f"--curve: {exc} (e.g. --curve 10,64,500,2000)")
    options = Options(
        duration=args.duration if args.duration is not None else base["duration"],
        runs=args.runs if args.runs is not None else base["runs"],
        warmup=args.warmup if args.warmup is not None else base["warmup"],
        connections=args.connections,
        idle_connections=(
            args.idle_connections if args.idle_connections is not None
            else base["idle_connections"]
        ),
        placement=args.placement,
        curve=curve,
        websockets=args.websockets if args.websockets is not None else base["websockets"],
        with_pure_python=args.with_pure_python,
    )
    for name in ("duration", "runs", "connections"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(options, name)}")
    if options.warmup < 0 or options.idle_connections < 0 or options.websockets < 0:
        parser.error("--warmup, --idle-connections and --websockets must not be negative")
    return options


def _say(message: str) -> None:
    print(f"lb_vs_nginx: {message}", file=sys.stderr, flush=True)


def _tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _header(options: Options, placement: Placement) -> list[str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"corral lb vs nginx: wrk -t1 -c{options.connections}, HTTPS keep-alive, GET / -> 200 "
        f"'ok'; {options.runs} x {options.duration} s runs per target (median) after a "
        f"{options.warmup} s warm-up; {options.idle_connections} idle TLS connections per proxy",
        f"machine: {os.cpu_count()} CPUs, {placement.describe()}; load average at start {load}",
        f"corral lb: {native.check().describe()}",
        "versions: "
        + ", ".join(
            [
                _tool_version(["nginx", "-v"]),
                _tool_version(["haproxy", "-v"]).split(" - ")[0],
                _tool_version(["wrk", "--version"]).split(" [")[0],
                f"corral {importlib.metadata.version('corral')}",
                f"Python {platform.python_version()}",
                ssl.OPENSSL_VERSION,
            ]
        ),
    ]


class _Pacing(TypedDict):
    """The keyword arguments every step measured in interleaved runs takes from the options."""

    duration_s: int
    runs: int
    warmup: bool
    say: Callable[[str], None]


def _paced(options: Options) -> _Pacing:
    """Seconds per run, runs, whether to warm up, and where progress goes, for one step."""
    return _Pacing(
        duration_s=options.duration, runs=options.runs, warmup=options.warmup > 0, say=_say
    )


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _measure(targets: list[Target], options: Options, script: Path, cpu: int | None) -> None:
    """Warm up each target, then interleave the measured runs so drift hits all alike."""
    for target in targets:
        if options.warmup:
            _say(f"warm-up {target.figures.name} ({options.warmup} s)")
            run_wrk(target.url, options.warmup, options.connections, script, cpu)
    for run in range(1, options.runs + 1):
        for target in targets:
            worker = psutil.Process(target.worker_pid)
            cpu_before = _cpu_seconds(worker)
            result = run_wrk(target.url, options.duration, options.connections, script, cpu)
            cpu_used = _cpu_seconds(worker) - cpu_before
            target.figures.runs.append(result)
            if result.requests:
                target.figures.cpu_us_per_request.append(cpu_used / result.requests * 1e6)
            _say(
                f"run {run}/{options.runs} {target.figures.name}: "
                f"{result.requests_per_s:,.0f} req/s, p99 {result.p99_ms:.2f} ms, "
                f"worker CPU {cpu_used:.1f} s"
                + (f", {result.error_note}" if result.errors else "")
            )


def _measure_memory(targets: list[Target], options: Options, context: ssl.SSLContext) -> None:
    for target in targets:
        if target.https_port is None or not options.idle_connections:
            continue
        _say(f"{target.figures.name}: opening {options.idle_connections} idle TLS connections")
        result = measure_idle_connections(
            target.worker_pid, target.https_port, options.idle_connections, context
        )
        target.figures.kib_per_connection = result.kib_per_connection
        if result.opened < result.requested:
            target.figures.idle_note = f"only {result.opened}/{result.requested} stayed open"
        _say(
            f"{target.figures.name}: worker RSS {result.rss_before / 2**20:.1f} -> "
            f"{result.rss_with_connections / 2**20:.1f} MiB with {result.opened} connections"
        )


PROXIES = (
    ("nginx-rancher-example", "nginx, Rancher's example config as is (Connection: close upstream)"),
    ("nginx-tuned", "nginx, Rancher's example config + upstream keepalive 128, Connection \"\""),
    ("haproxy", "HAProxy, the equivalent config (1 thread, http-reuse always)"),
    ("corral-lb", "corral lb, the equivalent config (upstream keep-alive by default)"),
)
PURE = "corral-lb-pure"
PURE_PROXY = (PURE, "corral lb, the same with CORRAL_PURE_PYTHON=1 (hot path not compiled)")


def _start_targets(
    stack: contextlib.ExitStack,
    work: Path,
    certs: CertFiles,
    placement: Placement,
    *,
    with_pure_python: bool = False,
) -> list[Target]:
    """Backend, then the proxies in front of it; each is stopped when `stack` closes."""
    port = PortPicker()
    backend_port = port()
    backend = start_backend(work, backend_port, placement.backend)
    stack.callback(backend.stop)
    backend.wait_listening([backend_port])
    targets: list[Target] = []
    for name, description in [*PROXIES, *([PURE_PROXY] if with_pure_python else [])]:
        ports = ProxyPorts(https=port(), http=port())
        if name.startswith("corral-lb"):
            service = start_corral_lb(
                work, ports, backend_port, certs, placement.proxy, name=name,
                pure_python=name == PURE,
            )
        elif name == "haproxy":
            service = start_haproxy(work, ports, backend_port, certs, placement.proxy)
        else:
            tuned = name == "nginx-tuned"
            service = start_nginx_proxy(
                work, ports, backend_port, certs, placement.proxy, tuned=tuned
            )
        stack.callback(service.stop)
        service.wait_listening([ports.https, ports.http])
        url = f"https://127.0.0.1:{ports.https}/"
        figures = TargetFigures(name, description)
        targets.append(Target(figures, url, service, ports.https))
    direct = TargetFigures("backend-direct", "the backend itself over plain HTTP (no TLS)")
    url = f"http://127.0.0.1:{backend_port}/"
    targets.append(Target(direct, url, backend, None))
    return targets


def _report(figures: list[TargetFigures], idle_connections: int) -> list[str]:
    lines = ["", *format_table(figures).splitlines(), ""]
    lines += [f"{f.name:<15} {f.description}; {f.tls}" for f in figures]
    lines += [format_runs(f) for f in figures]
    lines += [f"{f.name}: {f.idle_note}" for f in figures if f.idle_note]
    by_name = {f.name: f for f in figures}
    corral, tuned = by_name["corral-lb"], by_name["nginx-tuned"]
    return [
        *lines,
        "backend-direct is plain HTTP straight to the backend: the ceiling, not a peer.",
        f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        "other work on this machine makes the figures noisy.",
        *peer_lines(corral, [by_name["haproxy"], tuned], idle_connections),
        *([compiled_line(corral, by_name[PURE])] if PURE in by_name else []),
        cpu_ratio_line(corral, tuned),
        ratio_line(corral, tuned),
    ]


def run(options: Options) -> list[str]:
    """Start everything, measure, stop everything; returns the report's lines."""
    for tool in ("nginx", "haproxy", "wrk"):
        if shutil.which(tool) is None:
            raise BenchError(f"`{tool}` is not installed; run scripts/setup (or bench/lb_vs_nginx)")
    placement = choose_placement(options.placement, sorted(os.sched_getaffinity(0)))
    if placement.load is not None:
        os.sched_setaffinity(0, {placement.load})  # this process runs the idle-connection client
    fd_limit = fd_hard_limit()
    websockets = min(options.websockets, websocket_capacity(fd_limit))
    raise_open_files_limit(max(options.idle_connections, websockets, 2000) + NOFILE_HEADROOM)
    header = _header(options, placement)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-bench-")))
        certs = make_certificate(work)
        context = client_context(certs)
        script = work / "done.lua"
        script.write_text(DONE_SCRIPT)
        targets = _start_targets(  # stopped before tmp goes
            stack, work, certs, placement, with_pure_python=options.with_pure_python
        )
        for target in targets:
            target.figures.tls = probe(target, context)
            target.worker_pid = target.service.worker_pid()
        _measure(targets, options, script, placement.load)
        h2 = measure_h2(targets, cpu=placement.load, **_paced(options))
        _measure_memory(targets, options, context)
        # after the memory figure: a proxy that held 2,000 connections reuses that memory for
        # the idle ones, which would then cost it nothing
        curves = measure_curve(
            targets,
            options.curve,
            duration_s=options.duration,
            script=script,
            cpu=placement.load,
            say=_say,
        )
        backend_port = int(targets[-1].url.rstrip("/").rsplit(":", 1)[1])
        # after the memory figure: short-lived connections grow corral's RSS for a while
        handshakes = measure_handshakes(
            targets,
            work,
            certs,
            backend_port,
            proxy_cpu=placement.proxy,
            load_cpu=placement.load,
            **_paced(options),
        )
        peer_handshakes = measure_peer_handshakes(
            targets, load_cpu=placement.load, **_paced(options)
        )
        two = measure_two_workers(
            stack, work, certs, backend_port, duration_s=options.duration, runs=options.runs,
            connections=options.connections, script=script, say=_say,
        )
        ws = (
            measure_websockets(
                work,
                certs,
                context,
                websockets,
                proxy_cpu=placement.proxy,
                backend_cpu=placement.backend,
                say=_say,
            )
            if websockets
            else []
        )
    # its last line stays the wrk ratio
    report = _report([t.figures for t in targets], options.idle_connections)
    extra = curve_report(curves, options.curve, options.duration)
    extra += h2_report(h2, options.duration) + handshake_report(handshakes, options.duration)
    extra += peer_handshake_report(peer_handshakes, handshakes)
    extra += two_worker_report(two)
    capped = options.websockets if websockets < options.websockets else None
    extra += websocket_report(ws, websockets, capped)
    return header + report[:-1] + extra + report[-1:]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when a step failed, 130 on Ctrl-C."""
    options = parse_args(argv)
    return run_main(lambda: run(options), _say)


if __name__ == "__main__":
    sys.exit(main())
