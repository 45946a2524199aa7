"""`python -m bench.server_profile`: where `corral server` spends its CPU per audited request.

bench/server's stack for each AUDIT_LEVEL asked for (default 0 and 3), all up at once (every
server pinned to CPU 0, each behind its own `corral lb` on CPU 1), each server sampled by
`bench.server_sampler` (a SIGPROF timer on the process's CPU time records the main thread's
Python stack; the garbage collector's passes are timed). After a warm-up the samples start
over; wrk then loads authenticated `GET /v3/settings` through each lb in turn, in rounds, so
load from elsewhere on the machine hits every subject alike.

The report, in server CPU microseconds per request: per subject the CPU of each thread (and how
much of it in the kernel), the functions by total (self + callees) and by self time; per tree
the functions whose total grew the most from the first level to the last; and a summary of the
rounds (median req/s, median and lowest CPU per request: the lowest is the least disturbed by
other work on the machine). Time in C counts for the Python line that called it; another
thread's CPU (the audit writer's) and the kernel's count for whatever the main thread runs
next, so small per-function figures are approximate; the per-thread figures are exact.
Sampling costs the server a few per cent.

With `--baseline TREE` the servers of another source tree (its `src/`, e.g. unpacked from
`git archive HEAD`) run alongside, their rounds interleaved with this tree's: an A/B under the
same load. Not part of `bench/server`.

    python -m bench.server_profile --duration 12 [--levels 0 3] [--rounds 4] [--top 30]
    python -m bench.server_profile --baseline /tmp/corral-head --duration 32 --rounds 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.processes import BenchError, run_main
from bench.sampler import Key, seconds_per_sample
from bench.server_report import SETTINGS
from bench.server_sampler import threads_file
from bench.server_stack import Stack, check_endpoints, login, new_password, start_stack
from bench.targets import client_context, make_certificate
from bench.wrk import DONE_SCRIPT, run_wrk

SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = 32
WARMUP_S = 2


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of `pid`, by native thread id."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def thread_system_cpu(pid: int) -> dict[int, float]:
    """System (kernel) CPU seconds of each thread of `pid`, by native thread id."""
    return {t.id: t.system_time for t in psutil.Process(pid).threads()}


def _short(path: str) -> str:
    for marker in ("/src/corral/", "/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return os.path.basename(path)


def per_request(data: dict[str, Any], kind: str, requests: int) -> dict[Key, float]:
    """Microseconds of server CPU per request for each function (`own` or `under`): its share
    of the samples times the CPU time the process used, per request."""
    scale = seconds_per_sample(data) * 1e6 / max(requests, 1)
    return {(f, name, line): n * scale for f, name, line, n in data[kind]}


def level_report(data: dict[str, Any], subject: Subject, top: int) -> list[str]:
    """One subject's profile: us/request, CPU by thread, GC, the top functions by total and by
    self."""
    requests = subject.requests
    samples = int(data["samples"])
    us = float(data["cpu_seconds"]) * 1e6 / max(requests, 1)
    gc_us = [seconds * 1e6 / max(requests, 1) for seconds in data["gc_seconds"]]
    lines = [
        f"{subject.label}: {requests:,} requests, {samples:,} samples: {us:.0f} us of server "
        "CPU per request",
        "  CPU by thread, us/req (of which system): " + ", ".join(
            f"{name} {seconds * 1e6 / max(requests, 1):.1f} "
            f"({subject.threads_system.get(name, 0.0) * 1e6 / max(requests, 1):.1f})"
            for name, seconds in sorted(subject.threads.items(), key=lambda kv: -kv[1])),
        "  garbage collection, us/req (passes): " + ", ".join(
            f"gen{g} {gc_us[g]:.1f} ({data['gc_passes'][g]})" for g in range(3)),
    ]
    for title, kind in (("total (self + callees)", "under"), ("self", "own")):
        lines.append(f"  by {title}, us/req:")
        rows = sorted(per_request(data, kind, requests).items(), key=lambda kv: -kv[1])
        lines += [f"    {v:6.1f}  {name}  {_short(f)}:{line}" for (f, name, line), v in rows[:top]]
    return lines


def growth_report(first: tuple[str, dict[str, Any], int], last: tuple[str, dict[str, Any], int],
                  top: int) -> list[str]:
    """Functions whose total us/request grew the most from the first subject to the last."""
    (label0, data0, n0), (label1, data1, n1) = first, last
    before, after = per_request(data0, "under", n0), per_request(data1, "under", n1)
    grown = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    lines = [f"grew from {label0} to {label1} (total us/req: before -> after):"]
    for delta, (f, name, line) in grown[:top]:
        lines.append(f"  {delta:+6.1f}  {before.get((f, name, line), 0.0):6.1f} -> "
                     f"{after[(f, name, line)]:6.1f}  {name}  {_short(f)}:{line}")
    return lines


def summary(subjects: list[Subject]) -> list[str]:
    """Per subject: req/s and server CPU us/req of every round, median and minimum."""
    lines = ["subject             median req/s  median CPU us/req  min CPU us/req  rounds (us/req)"]
    for s in subjects:
        cpu = s.cpu_per_request
        lines.append(f"{s.label:<18}  {statistics.median(s.rates):12,.0f}  "
                     f"{statistics.median(cpu):17.0f}  {min(cpu):14.0f}  "
                     + " ".join(f"{x:.0f}" for x in cpu))
    return lines


@dataclass
class Subject:
    """One sampled system (a level, maybe of the baseline tree), its wrk script, its runs."""

    label: str
    system: Stack
    script: Path
    out: Path
    requests: int = 0
    rates: list[float] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)
    threads: dict[str, float] = field(default_factory=dict)  # CPU seconds by thread name
    threads_system: dict[str, float] = field(default_factory=dict)  # of which in the kernel
    cpu_before: dict[int, float] = field(default_factory=dict)
    system_before: dict[int, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.system.server.proc.pid

    def start_measuring(self) -> None:
        """Reset the server's samples and note each thread's CPU time."""
        names = threads_file(self.out)
        names.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)  # samples start over
        deadline = time.monotonic() + 10
        while not names.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.cpu_before = thread_cpu(self.pid)
        self.system_before = thread_system_cpu(self.pid)

    def measure_round(self, seconds: int) -> None:
        """One wrk run; its requests, rate and the server's CPU per request."""
        before = sum(thread_cpu(self.pid).values())
        result = run_wrk(self.system.base_url + SETTINGS, seconds, CONNECTIONS, self.script,
                         LOAD_CPU)
        used = sum(thread_cpu(self.pid).values()) - before
        self.requests += result.requests
        self.rates.append(result.requests_per_s)
        self.cpu_per_request.append(used * 1e6 / max(result.requests, 1))

    def stop_measuring(self) -> None:
        """CPU time per thread since start_measuring, by the names the server wrote."""
        after, system = thread_cpu(self.pid), thread_system_cpu(self.pid)
        names = json.loads(threads_file(self.out).read_text())
        for tid, seconds in after.items():
            name = names.get(str(tid), "other threads")
            used = seconds - self.cpu_before.get(tid, 0.0)
            in_kernel = system.get(tid, 0.0) - self.system_before.get(tid, 0.0)
            self.threads[name] = self.threads.get(name, 0.0) + used
            self.threads_system[name] = self.threads_system.get(name, 0.0) + in_kernel


def prepare(stack: contextlib.ExitStack, work: Path, level: int, tree: Path | None) -> Subject:
    """Start one level's sampled server (of `tree`'s src/ when given) and its lb, log in,
    check the endpoints."""
    label = f"{'baseline ' if tree else ''}AUDIT_LEVEL={level}"
    directory = work / label.replace(" ", "-").replace("=", "")
    directory.mkdir()
    certs = make_certificate(directory)
    context = client_context(certs)
    out = directory / "profile.json"
    python = [sys.executable] if tree is None else [
        "env", f"PYTHONPATH={tree.resolve() / 'src'}", sys.executable]
    launcher = [*python, "-m", "bench.server_sampler", str(out), "--"]
    password = new_password()
    system = start_stack(stack, directory, level, certs, password, (SERVER_CPU, LOAD_CPU),
                         launcher=launcher)
    token = login(system.base_url, context, password)
    check_endpoints(system.base_url, context, token)
    script = directory / "wrk.lua"
    script.touch(mode=0o600)
    script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n{DONE_SCRIPT}')
    return Subject(label, system, script, out)


def run(options: argparse.Namespace) -> list[str]:
    """Profile the subjects together, their runs alternating; the reports, then the growth."""
    lines = [f"load average at start {_load()}"]
    trees: list[Path | None] = [options.baseline, None] if options.baseline else [None]
    per_round = max(1, options.duration // options.rounds)
    with tempfile.TemporaryDirectory(prefix="corral-server-prof-") as tmp:
        with contextlib.ExitStack() as stack:
            subjects = [prepare(stack, Path(tmp), level, tree)
                        for tree in trees for level in options.levels]
            for subject in subjects:
                _say(f"{subject.label}: warm-up ({WARMUP_S} s)")
                run_wrk(subject.system.base_url + SETTINGS, WARMUP_S, CONNECTIONS,
                        subject.script, LOAD_CPU)
                subject.start_measuring()
            for number in range(1, options.rounds + 1):
                _say(f"round {number}/{options.rounds} ({per_round} s per subject)")
                for subject in subjects:
                    subject.measure_round(per_round)
            for subject in subjects:
                subject.stop_measuring()
        profiles: list[tuple[str, dict[str, Any], int]] = []
        for subject in subjects:
            if not subject.out.exists():
                raise BenchError(f"the sampled server ({subject.label}) wrote no profile")
            data = json.loads(subject.out.read_text())
            profiles.append((subject.label, data, subject.requests))
            lines += ["", *level_report(data, subject, options.top)]
    for group in range(len(trees)):
        first, last = group * len(options.levels), (group + 1) * len(options.levels) - 1
        if last > first:
            lines += ["", *growth_report(profiles[first], profiles[last], options.top)]
    lines += ["", *summary(subjects), f"load average at end {_load()}"]
    return lines


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    """Parse the options and profile."""
    parser = argparse.ArgumentParser(prog="python -m bench.server_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=12,
                        help="seconds of measured load per subject")
    parser.add_argument("--rounds", type=int, default=4,
                        help="runs per subject the duration is split into, alternating subjects")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 3], choices=range(4))
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="also profile the servers of another source tree (its src/, e.g. "
                        "from `git archive HEAD`), interleaved with this one's")
    parser.add_argument("--top", type=int, default=30, help="rows per table")
    options = parser.parse_args()
    if options.baseline is not None and not (options.baseline / "src" / "corral").is_dir():
        parser.error(f"--baseline {options.baseline}: no src/corral there; give a source tree")
    sys.exit(run_main(lambda: run(options), _say))


def _say(message: str) -> None:
    print(f"server_profile: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
