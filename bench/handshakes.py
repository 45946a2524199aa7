"""TLS handshakes per second of each proxy: new connections, no resumption.

`openssl s_time -new` clients (several in parallel, on the load CPU) open a connection, complete
a TLS handshake with OpenSSL's default client groups (X25519 first, as browsers), close, and
start over; no session is resumed and no request is sent. Measured: handshakes/s, and the CPU
time the proxy's worker spent per handshake. corral lb runs twice: with `tls.groups: [P-256]`
(the key exchange it offered before X25519: a client's X25519 key share costs a
HelloRetryRequest round trip) and with its default groups; nginx with Rancher's example
configuration offers OpenSSL's default groups.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import psutil

from bench.configs import CertFiles, ProxyPorts, corral_lb_yaml
from bench.processes import BenchError, Service, kill, spawn_captured
from bench.targets import PortPicker, Target

CLIENTS = 4  # s_time processes in parallel: enough to keep one proxy worker busy
BEFORE_GROUPS = ("P-256",)  # what corral lb offered before X25519 (prime256v1 only)
NGINX = "nginx-rancher-example"
CORRAL = "corral-lb"
CORRAL_BEFORE = "corral-lb-p256"
S_TIME_COUNT = re.compile(r"^(\d+) connections in \d+ real seconds", re.MULTILINE)
TEMP_KEY_LINE = re.compile(r"^Server Temp Key: (?:ECDH, )?([^,]+),", re.MULTILINE)


@dataclass
class HandshakeFigures:
    """One proxy's handshake runs."""

    name: str
    description: str
    group: str = "?"  # what a default OpenSSL client negotiates
    rates: list[float] = field(default_factory=list)  # handshakes/s of each run
    cpu_us: list[float] = field(default_factory=list)  # worker CPU per handshake of each run
    busy: list[float] = field(default_factory=list)  # worker CPU / wall-clock time of each run

    @property
    def rate(self) -> float:
        """Median handshakes/s."""
        return median(self.rates) if self.rates else float("nan")

    @property
    def cpu(self) -> float:
        """Median worker CPU µs per handshake."""
        return median(self.cpu_us) if self.cpu_us else float("nan")

    @property
    def busy_percent(self) -> float:
        """Median share of one CPU the worker used (below ~95: the clients set the pace)."""
        return 100 * median(self.busy) if self.busy else float("nan")


@dataclass(frozen=True)
class _Subject:
    figures: HandshakeFigures
    port: int
    worker_pid: int


def run_s_time(
    port: int, duration_s: int, cpu: int | None, clients: int = CLIENTS
) -> tuple[int, float]:
    """(handshakes, wall-clock seconds) of `clients` parallel `openssl s_time -new` runs of
    `duration_s` seconds each."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(duration_s)]
    started = time.monotonic()
    procs: list[subprocess.Popen[str]] = []
    outputs = []
    try:
        for _ in range(clients):
            procs.append(spawn_captured(argv, cpu, merge_stderr=True))
        for proc in procs:
            out, _ = proc.communicate(timeout=duration_s + 60)
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill(proc)
    elapsed = time.monotonic() - started
    total = 0
    for out in outputs:
        match = S_TIME_COUNT.search(out)
        if match is None:
            raise BenchError(f"openssl s_time against port {port} printed no count:\n{out[-2000:]}")
        total += int(match.group(1))
    return total, elapsed


def negotiated_group(port: int) -> str:
    """The key exchange a default OpenSSL client gets (X25519, prime256v1, ...)."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    match = TEMP_KEY_LINE.search(done.stdout)
    return match.group(1) if match else "?"


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _start_corral_before(
    stack: contextlib.ExitStack, work: Path, certs: CertFiles, backend_port: int, cpu: int | None
) -> tuple[int, int]:
    """corral lb offering P-256 only; (HTTPS port, worker pid)."""
    port = PortPicker()
    ports = ProxyPorts(https=port(), http=port())
    directory = work / CORRAL_BEFORE
    directory.mkdir(parents=True)
    config = directory / "lb.yml"
    config.write_text(corral_lb_yaml(ports, backend_port, certs, groups=BEFORE_GROUPS))
    argv = [sys.executable, "-m", "corral.cli.main", "lb", "--config", str(config)]
    service = Service(f"corral lb ({CORRAL_BEFORE})", argv, directory / "output.log", cpu)
    stack.callback(service.stop)
    service.wait_listening([ports.https, ports.http])
    negotiated_group(ports.https)  # one handshake: the worker exists from here on
    return ports.https, service.worker_pid()


def measure_handshakes(
    targets: Sequence[Target],
    work: Path,
    certs: CertFiles,
    backend_port: int,
    *,
    duration_s: int,
    runs: int,
    warmup: bool,
    proxy_cpu: int | None,
    load_cpu: int | None,
    say: Callable[[str], None],
) -> list[HandshakeFigures]:
    """nginx (Rancher's example config), corral lb with P-256 only, corral lb with its default
    groups: handshakes/s and worker CPU per handshake, runs interleaved, median."""
    by_name = {t.figures.name: t for t in targets}
    with contextlib.ExitStack() as stack:
        before_port, before_pid = _start_corral_before(stack, work, certs, backend_port, proxy_cpu)
        subjects = [
            _Subject(
                HandshakeFigures(NGINX, "nginx, Rancher's example config (OpenSSL's groups)"),
                _https_port(by_name[NGINX]),
                by_name[NGINX].worker_pid,
            ),
            _Subject(
                HandshakeFigures(CORRAL_BEFORE, "corral lb, tls.groups [P-256] (before X25519)"),
                before_port,
                before_pid,
            ),
            _Subject(
                HandshakeFigures(CORRAL, "corral lb, default tls.groups [X25519, P-256, P-384]"),
                _https_port(by_name[CORRAL]),
                by_name[CORRAL].worker_pid,
            ),
        ]
        for subject in subjects:
            subject.figures.group = negotiated_group(subject.port)
            if warmup:
                say(f"handshakes: warm-up {subject.figures.name} (1 s)")
                run_s_time(subject.port, 1, load_cpu)
        for run in range(1, runs + 1):
            for subject in subjects:
                cpu_before = _cpu_seconds(subject.worker_pid)
                count, elapsed = run_s_time(subject.port, duration_s, load_cpu)
                cpu_used = _cpu_seconds(subject.worker_pid) - cpu_before
                rate = count / elapsed
                subject.figures.rates.append(rate)
                subject.figures.busy.append(cpu_used / elapsed)
                if count:
                    subject.figures.cpu_us.append(cpu_used / count * 1e6)
                say(
                    f"handshakes run {run}/{runs} {subject.figures.name}: {rate:,.0f}/s, "
                    f"worker CPU {cpu_used:.1f} s"
                )
    return [subject.figures for subject in subjects]


def _https_port(target: Target) -> int:
    if target.https_port is None:
        raise BenchError(f"{target.figures.name} has no HTTPS port")
    return target.https_port


def handshake_report(figures: Sequence[HandshakeFigures], duration_s: int) -> list[str]:
    """Lines for the report: each proxy's handshakes/s and CPU per handshake, then the ratios."""
    by_name = {f.name: f for f in figures}
    nginx, before, after = by_name[NGINX], by_name[CORRAL_BEFORE], by_name[CORRAL]
    width = max(len(f.name) for f in figures)
    lines = [
        "",
        f"TLS handshakes (openssl s_time -new, {CLIENTS} clients, {duration_s} s runs, median): "
        "new connections, no resumption, no request; TLS 1.3, the client's default groups",
    ]
    for f in figures:
        lines.append(
            f"  {f.name:<{width}} {f.rate:>7,.0f} handshakes/s  {f.cpu:>5,.0f} us CPU/handshake "
            f"(= {_per_core(f.cpu)}/s per core)  worker busy {f.busy_percent:>3.0f}%  "
            f"group {f.group}  ({f.description})"
        )
    return [
        *lines,
        "  (a worker busy well below 100% was waiting for the clients: its handshakes/s is a "
        "floor, its CPU/handshake still holds)",
        f"ratio corral/{NGINX} TLS handshakes/s: before X25519 {_ratio(before.rate, nginx.rate)}, "
        f"after {_ratio(after.rate, nginx.rate)}",
        f"cpu-efficiency corral/{NGINX} TLS handshakes (CPU per handshake: nginx / corral): "
        f"before X25519 {_ratio(nginx.cpu, before.cpu)}, after {_ratio(nginx.cpu, after.cpu)}",
        f"ratio corral after/before X25519 TLS handshakes/s: {_ratio(after.rate, before.rate)}, "
        f"CPU per handshake: {_ratio(after.cpu, before.cpu)}",
    ]


def _per_core(cpu_us: float) -> str:
    """Handshakes one fully busy core would do at that CPU cost."""
    return f"{1e6 / cpu_us:,.0f}" if cpu_us and cpu_us == cpu_us else "nan"


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "nan"
