"""Smoke check of bench/lb_profile.py, the sampling profiler of corral lb's worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_short_profile_names_the_proxy_functions_that_ran(tmp_path: Path) -> None:
    """A 1 s wrk profile prints a sample count and shares for corral lb's own functions."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.lb_profile", "--duration", "1", "--top", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^wrk: [\d,]+ req/s, errors 0$", done.stdout, re.M), done.stdout
    assert re.search(r"^\d+ samples", done.stdout, re.M), done.stdout
    assert re.search(r"%\s+data_received\s+proxy/", done.stdout), done.stdout
    assert not list(tmp_path.iterdir()), "the profile's work directory was left behind"
