"""Smoke checks of bench/lb_vs_nginx, so the benchmark script cannot rot (no speed asserted)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.net import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "bench" / "lb_vs_nginx"
TINY = ["--quick", "--no-setup", "--duration", "1", "--warmup", "1", "--runs", "1"]
# target → its KiB/conn cell: a figure for each proxy, "-" for the backend (no idle test)
TARGETS = {
    "nginx-rancher-example": r"-?\d+\.\d",
    "nginx-tuned": r"-?\d+\.\d",
    "corral-lb": r"-?\d+\.\d",
    "backend-direct": "-",
}
ROW = r"{name}\s+[\d,]+\s+\d+\.\d\d\s+{kib}\s+\d+\.\d\s+\d+"


def processes_under(directory: Path) -> list[str]:
    """Command lines of live processes that mention `directory` (the bench's work files)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory) in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def bench_tmp(tmp_path: Path) -> Iterator[Path]:
    """A TMPDIR for the bench's work directory; fails the test if a process outlives it."""
    yield tmp_path
    leftovers = processes_under(tmp_path)
    for process in psutil.process_iter(["cmdline"]):  # never leave them running, even on failure
        if str(tmp_path) in " ".join(process.info["cmdline"] or []):
            process.kill()
    assert not leftovers, f"processes left running: {leftovers}"


def test_quick_run_prints_all_targets_and_the_ratio(bench_tmp: Path) -> None:
    """A tiny run prints a row per target and ends with the throughput ratio line."""
    done = subprocess.run(
        [str(SCRIPT), *TINY, "--idle-connections", "100"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(bench_tmp)},
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio corral/nginx-tuned: \d+\.\d\d", lines[-1]), lines[-1]
    for name, kib in TARGETS.items():
        rows = [line for line in lines if re.fullmatch(ROW.format(name=name, kib=kib), line)]
        assert len(rows) == 1, f"no table row for {name} in:\n{done.stdout}"
    assert not processes_under(bench_tmp), "a process outlived the benchmark"


def test_ctrl_c_stops_everything_it_started(bench_tmp: Path) -> None:
    """SIGINT in the middle of a run exits 130 and leaves no nginx or corral lb behind."""
    stderr_path = bench_tmp / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        bench = subprocess.Popen(
            [str(SCRIPT), *TINY, "--warmup", "30"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "TMPDIR": str(bench_tmp)},
            cwd=REPO_ROOT,
        )
        try:
            wait_until(
                lambda: "warm-up" in stderr_path.read_text() or bench.poll() is not None,
                timeout=60,
                what="the bench to start warming up",
            )
            assert bench.poll() is None, stderr_path.read_text()
            assert len(processes_under(bench_tmp)) >= 4, "backend and three proxies should run"
            bench.send_signal(signal.SIGINT)
            assert bench.wait(timeout=60) == 130, stderr_path.read_text()
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
    assert not processes_under(bench_tmp), "a process outlived the interrupted benchmark"
    assert "interrupted" in stderr_path.read_text()
