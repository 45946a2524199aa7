"""`python -m bench.lb_profile`: where corral lb's worker spends its CPU under load.

Starts the benchmark's backend (CPU 1) and a corral lb (CPU 0, the benchmark's configuration)
whose worker samples itself (bench.sampler): a SIGPROF timer on the worker's CPU time
(`setitimer` ITIMER_PROF) records the Python stack at each tick. `wrk -t1 -c64` (or, with
`--h2`, `h2load -t1 -c16 -m32` with 4,000 requests per second of `--duration`) loads it from
CPU 1; then the lb is stopped and the profile printed: the worker CPU time the samples cover
(measured, and so per sample: the kernel delivers at most one a scheduler tick), per function
the share of samples spent in it (self: the innermost frame) and under it (total), and the
busiest lines. Time in C (a TLS write, a `send`) counts for the Python line that called it.
Not part of `bench/lb_vs_nginx`.

The lb runs its pure-Python hot path (CORRAL_PURE_PYTHON=1): a mypyc-compiled function has no
Python frame to sample, and Python runs a signal handler only between bytecodes, so with the
compiled modules each sample would land on the next interpreted function instead. `perf
record -p <worker pid>` sees the compiled build's C functions.

    python -m bench.lb_profile --duration 10 [--h2] [--top 40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.configs import ProxyPorts, corral_lb_yaml
from bench.h2load import H2_CONNECTIONS, h2load_argv
from bench.processes import BenchError, Service, run_child, run_main
from bench.report import TargetFigures
from bench.sampler import Sampler, seconds_per_sample
from bench.targets import (
    PortPicker,
    Target,
    client_context,
    make_certificate,
    probe,
    start_backend,
)
from bench.wrk import DONE_SCRIPT, parse_wrk_output, wrk_argv
from corral._native import PURE_ENV

PROXY_CPU, LOAD_CPU = 0, 1
KEEP = 300  # rows of each count the worker writes


def serve(out: Path, config: Path) -> None:
    """Run `corral lb --config config` with every worker sampled into `out`."""
    import corral.proxy.worker as worker
    from corral.cli.main import main

    original: Callable[..., int] = worker.run_worker

    def sampled(*args: Any, **kwargs: Any) -> int:
        sampler = Sampler(keep=KEEP)
        sampler.start()
        try:
            return original(*args, **kwargs)
        finally:
            sampler.stop(out)

    worker.run_worker = sampled
    sys.argv = ["corral", "lb", "--config", str(config)]
    main()


def _short(path: str) -> str:
    for marker in ("/src/corral/", "/site-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return os.path.basename(path)


def report(data: dict[str, Any], top: int) -> list[str]:
    """The profile as lines: functions by self share, by total share, busiest lines."""
    total = max(1, int(data["samples"]))
    per_sample_ms = seconds_per_sample(data) * 1000
    lines = [
        f"{total} samples ({per_sample_ms:.1f} ms of worker CPU each on average, "
        f"{float(data['cpu_seconds']):.2f} s in all)"
    ]
    for title, kind in (("self", "own"), ("total (self + callees)", "under")):
        lines += ["", f"by {title}:"]
        for filename, name, line, n in data[kind][:top]:
            lines.append(f"  {100 * n / total:5.1f}%  {name}  {_short(filename)}:{line}")
    lines += ["", "busiest lines:"]
    for filename, name, line, n in data["lines"][:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {_short(filename)}:{line} ({name})")
    return lines


def run(duration: int, h2: bool, top: int) -> list[str]:
    """Start backend and sampled lb, load it, stop it; the profile's lines."""
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-prof-")))
        certs = make_certificate(work)
        port = PortPicker()
        backend_port = port()
        backend = start_backend(work, backend_port, LOAD_CPU)
        stack.callback(backend.stop)
        backend.wait_listening([backend_port])
        ports = ProxyPorts(https=port(), http=port())
        (work / "lb").mkdir()
        config = work / "lb" / "lb.yml"
        config.write_text(corral_lb_yaml(ports, backend_port, certs))
        out = work / "profile.json"
        argv = [sys.executable, "-m", "bench.lb_profile", "--serve", str(out), str(config)]
        env = {**os.environ, PURE_ENV: "1"}  # see the module's docstring
        lb = Service("corral lb (sampled)", argv, work / "lb" / "output.log", PROXY_CPU, env=env)
        stack.callback(lb.stop)
        lb.wait_listening([ports.https])
        url = f"https://127.0.0.1:{ports.https}/"
        probe(Target(TargetFigures("corral-lb", ""), url, lb, ports.https), client_context(certs))
        if h2:
            per_connection = max(1000, 4000 * duration // H2_CONNECTIONS)
            load = h2load_argv(url, per_connection)
        else:
            script = work / "done.lua"
            script.write_text(DONE_SCRIPT)
            load = wrk_argv(url, duration, 64, script)
        done = run_child(load, LOAD_CPU, timeout=duration + 120)
        if done.returncode != 0:
            raise BenchError(f"{load[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        if h2:
            summary = [
                x for x in done.stdout.splitlines() if x.startswith(("finished", "requests"))
            ]
        else:
            result = parse_wrk_output(done.stdout)
            summary = [f"wrk: {result.requests_per_s:,.0f} req/s, errors {result.errors}"]
        lb.stop()
        if not out.exists():
            return [*summary, "the worker wrote no profile; its output:", lb.output_tail()]
        note = "profiled: the pure-Python hot path (CORRAL_PURE_PYTHON=1)"
        return [*summary, note, *report(json.loads(out.read_text()), top)]


def main() -> None:
    """Parse the options; profile (or, with --serve, be the sampled lb)."""
    parser = argparse.ArgumentParser(prog="python -m bench.lb_profile", description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--h2", action="store_true", help="h2load instead of wrk")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--serve", nargs=2, metavar=("OUT", "CONFIG"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(Path(options.serve[0]), Path(options.serve[1]))
        return
    sys.exit(run_main(lambda: run(options.duration, options.h2, options.top), _say))


def _say(message: str) -> None:
    print(f"lb_profile: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
