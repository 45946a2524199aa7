"""Smoke check of bench/store, so the store benchmark cannot rot (no speed asserted)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.support.etcd_cluster import etcd_available

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "bench" / "store"
NUMBER = r"[\d,]+(?:\.\d)?"
FINAL = r"etcd/sqlite: writes (\d+\.\d\d), reads (\d+\.\d\d)"


@pytest.mark.skipif(not etcd_available(), reason="etcd is not installed")
def test_quick_run_prints_the_table_and_the_ratios(tmp_path: Path) -> None:
    """`bench/store --quick` measures both backends, prints every row and ends with the
    etcd/sqlite ratios; nothing it started outlives it."""
    done = subprocess.run(
        [str(SCRIPT), "--quick", "--no-setup", "--warmup", "0", "--samples", "5"],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    for row in ("API writes/s (PUT setting)", "API reads/s (GET cluster)",
                "watch latency p50 ms", "watch latency p99 ms"):
        assert any(re.fullmatch(rf"{re.escape(row)}\s+{NUMBER}\s+{NUMBER}\s+\d+\.\d\d", line)
                   for line in lines), f"no row {row!r} in:\n{done.stdout}"
    final = re.fullmatch(FINAL, lines[-1])
    assert final and float(final.group(1)) > 0 and float(final.group(2)) > 0, lines[-1]
    assert "wrk counted" not in done.stdout, done.stdout
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    for process in leftovers:
        process.kill()
    assert not leftovers, [p.info["cmdline"] for p in leftovers]
