"""TLS handshakes of HAProxy, the second peer, measured as bench/handshakes.py measures nginx
and corral lb (`openssl s_time -new` clients on the load CPU, new connections, no resumption,
no request), right after them, with its functions; printed beside corral lb's figure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import median

import psutil

from bench.handshakes import CLIENTS, HandshakeFigures, negotiated_group, run_s_time
from bench.processes import BenchError
from bench.targets import Target

PEER = "haproxy"


def measure_peer_handshakes(
    targets: Sequence[Target],
    *,
    duration_s: int,
    runs: int,
    warmup: bool,
    load_cpu: int | None,
    say: Callable[[str], None],
) -> HandshakeFigures:
    """HAProxy's handshakes/s and worker CPU per handshake, median of `runs` runs."""
    target = next((t for t in targets if t.figures.name == PEER), None)
    if target is None or target.https_port is None:
        raise BenchError(f"no {PEER} target to measure handshakes against")
    figures = HandshakeFigures(PEER, "HAProxy, the equivalent config (OpenSSL's groups)")
    figures.group = negotiated_group(target.https_port)
    if warmup:
        say(f"handshakes: warm-up {PEER} (1 s)")
        run_s_time(target.https_port, 1, load_cpu)
    process = psutil.Process(target.worker_pid)
    for run in range(1, runs + 1):
        before = _cpu(process)
        count, elapsed = run_s_time(target.https_port, duration_s, load_cpu)
        used = _cpu(process) - before
        figures.rates.append(count / elapsed)
        figures.busy.append(used / elapsed)
        if count:
            figures.cpu_us.append(used / count * 1e6)
        rate = count / elapsed
        say(f"handshakes run {run}/{runs} {PEER}: {rate:,.0f}/s, worker CPU {used:.1f} s")
    return figures


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def peer_handshake_report(peer: HandshakeFigures, others: Sequence[HandshakeFigures]) -> list[str]:
    """HAProxy's line in the handshake section's format, and corral lb against it."""
    corral = next((f for f in others if f.name == "corral-lb"), None)
    cpu = median(peer.cpu_us) if peer.cpu_us else float("nan")
    lines = [
        f"  {peer.name:<21} {peer.rate:>7,.0f} handshakes/s  {cpu:>5,.0f} us CPU/handshake  "
        f"worker busy {peer.busy_percent:>3.0f}%  group {peer.group}  ({peer.description}; "
        f"{CLIENTS} clients, measured after the others)",
    ]
    if corral is not None and corral.cpu and peer.rate:
        lines.append(
            f"ratio corral/{PEER} TLS handshakes/s: {corral.rate / peer.rate:.2f}, "
            f"cpu-efficiency (CPU per handshake: {PEER} / corral): {cpu / corral.cpu:.2f}"
        )
    return lines
