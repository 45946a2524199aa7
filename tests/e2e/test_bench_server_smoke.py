"""Smoke checks of bench/server, so the audit-overhead benchmark cannot rot (no speed asserted)."""

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
SCRIPT = REPO_ROOT / "bench" / "server"
ROW = r"{endpoint}\s+{level}\s+[\d,]+\s+\d+\.\d\d\s+\d+\s+\d+"  # req/s, p99, CPU, errors
OVERHEAD = r"overhead level3 vs level0 on {endpoint}: -?\d+% \(ratio \d+\.\d\d\)"
FINAL = r"audit level-3 throughput ratio on /v3/settings: (\d+\.\d\d)"
AUDIT_GREW = r"audit log at level 3: grew to ([\d,]+) records .*written=(\d+) dropped=0"


def processes_under(directory: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `directory` (the bench's temp files)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(directory) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.fixture
def bench_tmp(tmp_path: Path) -> Iterator[Path]:
    """TMPDIR for the bench's work files; fails the test if a process outlives the bench."""
    yield tmp_path
    leftovers = processes_under(tmp_path)
    for process in leftovers:  # never leave them running, even when the test failed
        process.kill()
    assert not leftovers, f"processes left running: {[p.info['cmdline'] for p in leftovers]}"


@pytest.mark.parametrize(
    "extra",
    [[], ["--interleave", "--no-setup"], ["--no-setup", "--server-src", str(REPO_ROOT)]],
    ids=["in-turn", "interleaved", "server-src"],
)
def test_quick_run_prints_both_levels_and_the_ratio(bench_tmp: Path, extra: list[str]) -> None:
    """`bench/server --quick` prints a row per endpoint and level, the overheads, the ratio."""
    done = subprocess.run(
        [str(SCRIPT), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(bench_tmp)},
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    final = re.fullmatch(FINAL, lines[-1])
    assert final, lines[-1]
    assert float(final.group(1)) > 0
    for endpoint in ("/v3/settings", "/healthz"):
        for level in (0, 3):
            pattern = ROW.format(endpoint=re.escape(endpoint), level=level)
            rows = [line for line in lines if re.fullmatch(pattern, line)]
            assert len(rows) == 1, f"no row for {endpoint} level {level} in:\n{done.stdout}"
        overhead = OVERHEAD.format(endpoint=re.escape(endpoint))
        assert any(re.fullmatch(overhead, line) for line in lines), done.stdout
    grew = next(m for line in lines if (m := re.match(AUDIT_GREW, line)))
    assert int(grew.group(1).replace(",", "")) > 0
    assert "audit log at level 0: no records" in done.stdout
    if "--server-src" in extra:
        assert f"corral server from {REPO_ROOT}/src" in lines, done.stdout
    assert not processes_under(bench_tmp), "a process outlived the benchmark"


def test_server_src_without_a_source_tree_is_refused(tmp_path: Path) -> None:
    """--server-src naming a directory without src/corral exits 2 naming the flag and the fix."""
    done = subprocess.run(
        [str(SCRIPT), "--no-setup", "--server-src", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )
    assert done.returncode == 2
    assert f"--server-src {tmp_path}: no src/corral there" in done.stderr


def test_sigterm_stops_everything_it_started(bench_tmp: Path) -> None:
    """SIGTERM during the warm-up exits 143 and leaves no corral server or corral lb behind."""
    stderr_path = bench_tmp / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        bench = subprocess.Popen(
            [str(SCRIPT), "--quick", "--no-setup", "--warmup", "30"],
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
            assert len(processes_under(bench_tmp)) >= 2, "server and lb should be running"
            bench.send_signal(signal.SIGTERM)
            assert bench.wait(timeout=60) == 128 + signal.SIGTERM, stderr_path.read_text()
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
    assert not processes_under(bench_tmp), "a process outlived the terminated benchmark"
