"""The benchmarks' child processes: a Ctrl-C that arrives while a child is being forked is not
lost (Python would run its handler inside the at-fork hooks, which drop the exception)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]

# Sends itself SIGINT from an at-fork hook, i.e. in the middle of the fork of `spawn`.
SCRIPT = """
import os, signal, sys
from bench.processes import {function}

signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
armed = [True]

def interrupt_once() -> None:
    if armed[0]:
        armed[0] = False
        os.kill(os.getpid(), signal.SIGINT)

os.register_at_fork(before=interrupt_once)
try:
    result = {call}
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(0)
print("not interrupted", flush=True)
"""


def _run(function: str, call: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(function=function, call=call)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )


def test_ctrl_c_during_the_fork_of_spawn_interrupts_and_kills_the_child(tmp_path: Path) -> None:
    """SIGINT during spawn's fork raises KeyboardInterrupt from spawn and kills the child."""
    marker = tmp_path / "spawned-sleep"
    call = f"spawn(['sh', '-c', 'sleep 30', '{marker}'], None)"
    done = _run("spawn", call)
    assert done.stdout.strip() == "interrupted", done.stdout + done.stderr
    left = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(marker) in " ".join(p.info["cmdline"] or [])
    ]
    assert not left, f"the child outlived the interrupt: {left}"


def test_ctrl_c_during_the_fork_of_run_child_interrupts() -> None:
    """SIGINT during run_child's fork raises KeyboardInterrupt instead of being dropped."""
    done = _run("run_child", "run_child(['sleep', '30'], None, timeout=50)")
    assert done.stdout.strip() == "interrupted", done.stdout + done.stderr


def test_spawn_captured_merges_stderr_into_stdout_when_asked() -> None:
    """spawn_captured pipes both streams apart, or stderr into stdout with merge_stderr."""
    from bench.processes import spawn_captured

    argv = ["sh", "-c", "echo out; echo err >&2"]
    apart = spawn_captured(argv, None)
    out, err = apart.communicate(timeout=30)
    assert (out, err) == ("out\n", "err\n")
    merged = spawn_captured(argv, None, merge_stderr=True)
    out, err = merged.communicate(timeout=30)
    assert (out, err) == ("out\nerr\n", None)
