"""The sampling profiler of `bench.lb_profile` (corral lb's worker) and `bench.server_sampler`
(`corral server`): a SIGPROF timer on the process's CPU time records the main thread's Python
stack at each tick.

Standard library only (no imports from corral or the rest of bench/), so a server of another
source tree can run under it.

The timer is asked for every SAMPLE_INTERVAL_S of CPU time, but the kernel delivers at most one
signal per scheduler tick (4 ms at HZ=250), so a sample stands for whatever CPU time passed
since the last one: the counts are written with the CPU time measured between `reset` and
`stop` (`cpu_seconds`), and a sample's time is `cpu_seconds / samples`.
"""

from __future__ import annotations

import collections
import gc
import json
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

SAMPLE_INTERVAL_S = 0.001  # asked for; see the module's docstring for what is delivered
Key = tuple[str, str, int]  # file, function, first line (or the line, for `lines`)


class Sampler:
    """Samples the main thread's Python stack on SIGPROF; with `time_gc`, also times the
    garbage collector's passes. `stop` writes the `keep` most frequent of each count."""

    def __init__(self, *, keep: int = 400, time_gc: bool = False) -> None:
        self.keep = keep
        self.time_gc = time_gc
        self._gc_started = 0.0
        self.reset()

    def reset(self, *_: object) -> None:
        """Forget every sample so far and start measuring CPU time again (a signal handler
        too: its arguments are ignored)."""
        self.samples = 0
        self.own: collections.Counter[Key] = collections.Counter()
        self.under: collections.Counter[Key] = collections.Counter()
        self.lines: collections.Counter[Key] = collections.Counter()
        self.gc_seconds = [0.0, 0.0, 0.0]
        self.gc_passes = [0, 0, 0]
        self.cpu_at_reset = time.process_time()

    def _tick(self, _signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        if frame is None:
            return
        code = frame.f_code
        self.own[(code.co_filename, code.co_name, code.co_firstlineno)] += 1
        self.lines[(code.co_filename, code.co_name, frame.f_lineno)] += 1
        seen: set[Key] = set()
        current: FrameType | None = frame
        while current is not None:
            code = current.f_code
            key = (code.co_filename, code.co_name, code.co_firstlineno)
            if key not in seen:
                seen.add(key)
                self.under[key] += 1
            current = current.f_back

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            generation = info["generation"]
            self.gc_seconds[generation] += time.thread_time() - self._gc_started
            self.gc_passes[generation] += 1

    def start(self) -> None:
        """Sample from now on."""
        signal.signal(signal.SIGPROF, self._tick)
        signal.setitimer(signal.ITIMER_PROF, SAMPLE_INTERVAL_S, SAMPLE_INTERVAL_S)
        if self.time_gc:
            gc.callbacks.append(self._gc)

    def stop(self, path: Path) -> None:
        """Stop sampling and write the counts and the CPU time they cover to `path` (JSON):
        `samples`, `own`, `under`, `lines` (rows of file, function, line, count),
        `cpu_seconds`, and with `time_gc` `gc_seconds` and `gc_passes` per generation."""
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        cpu_seconds = time.process_time() - self.cpu_at_reset
        if self.time_gc and self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

        def rows(counter: collections.Counter[Key]) -> list[list[Any]]:
            return [[*key, n] for key, n in counter.most_common(self.keep)]

        data: dict[str, Any] = {
            "samples": self.samples, "own": rows(self.own), "under": rows(self.under),
            "lines": rows(self.lines), "cpu_seconds": cpu_seconds,
        }
        if self.time_gc:
            data.update(gc_seconds=self.gc_seconds, gc_passes=self.gc_passes)
        path.write_text(json.dumps(data))


def seconds_per_sample(data: dict[str, Any]) -> float:
    """The CPU time one sample of a written profile stands for (see the module's docstring)."""
    return float(data["cpu_seconds"]) / max(int(data["samples"]), 1)
