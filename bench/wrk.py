"""Running `wrk` and reading its result (the parsing is pure and separate from the run)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.processes import BenchError, run_child

RESULT_MARK = "BENCH-RESULT "

# wrk calls done() once at the end; no per-request hooks, so its fast path is untouched.
DONE_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %.0f, "duration_us": %.0f, "p50_us": %.1f, "p99_us": %.1f, '
    .. '"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}\\n',
    'BENCH-RESULT ', summary.requests, summary.duration,
    latency:percentile(50.0), latency:percentile(99.0),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles and every kind of error."""

    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def error_note(self) -> str:
        return "" if not self.errors else f"{self.errors} errors"


def parse_wrk_output(text: str) -> WrkResult:
    """The result line written by DONE_SCRIPT, as numbers; BenchError if wrk did not finish."""
    for line in text.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line[len(RESULT_MARK) :])
            duration_s = data["duration_us"] / 1e6
            if duration_s <= 0:
                raise BenchError(f"wrk reported a zero duration: {line}")
            errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
            return WrkResult(
                requests=int(data["requests"]),
                requests_per_s=data["requests"] / duration_s,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=errors,
            )
    raise BenchError(f"wrk printed no result line; its output:\n{text[-2000:]}")


def wrk_argv(url: str, duration_s: int, connections: int, script: Path) -> list[str]:
    """wrk with one thread, `connections` keep-alive connections and the latency histogram."""
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def run_wrk(
    url: str, duration_s: int, connections: int, script: Path, cpu: int | None
) -> WrkResult:
    """Run wrk once (pinned to `cpu` when given) and return its parsed result."""
    argv = wrk_argv(url, duration_s, connections, script)
    try:
        done = run_child(argv, cpu, timeout=duration_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {url} did not finish in {duration_s + 60}s") from exc
    if done.returncode != 0:
        raise BenchError(
            f"wrk against {url} failed with status {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return parse_wrk_output(done.stdout)
