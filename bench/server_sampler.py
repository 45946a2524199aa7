"""The sampled `corral server` of `python -m bench.server_profile` (a module of its own, with no
imports from the rest of bench/, so a server of another source tree can run under it).

    python -m bench.server_sampler OUT -- server <corral server arguments>

Samples the main thread's Python stack on SIGPROF (a timer on the process's CPU time), times the
garbage collector's passes, starts over on SIGUSR1 (writing the threads' names next to OUT), and
writes the counts to OUT (JSON) when the server exits.
"""

from __future__ import annotations

import collections
import gc
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

# Asked for; the kernel delivers at most one per scheduler tick (4 ms at HZ=250), so figures
# are scaled by the CPU time measured between reset and stop instead.
SAMPLE_INTERVAL_S = 0.001
Key = tuple[str, str, int]  # file, function, first line (or the line, for `lines`)


class Sampler:
    """Samples the main thread's Python stack on SIGPROF; times garbage collections; starts
    over on SIGUSR1 (sent after the warm-up)."""

    def __init__(self, threads_path: Path) -> None:
        self.threads_path = threads_path
        self.reset()
        self._gc_started = 0.0

    def reset(self, *_: object) -> None:
        """Forget every sample so far; write the threads' names (by native id) for the
        harness, which times each thread."""
        names = {str(t.native_id): t.name for t in threading.enumerate()}
        self.threads_path.write_text(json.dumps(names))
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
        signal.signal(signal.SIGUSR1, self.reset)
        signal.signal(signal.SIGPROF, self._tick)
        signal.setitimer(signal.ITIMER_PROF, SAMPLE_INTERVAL_S, SAMPLE_INTERVAL_S)
        gc.callbacks.append(self._gc)

    def stop(self, path: Path) -> None:
        """Stop sampling and write the counts to `path` (JSON)."""
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

        def rows(counter: collections.Counter[Key]) -> list[list[Any]]:
            return [[*key, n] for key, n in counter.most_common(400)]

        path.write_text(json.dumps({
            "samples": self.samples, "own": rows(self.own), "under": rows(self.under),
            "lines": rows(self.lines), "gc_seconds": self.gc_seconds, "gc_passes": self.gc_passes,
            "cpu_seconds": time.process_time() - self.cpu_at_reset,
        }))


def threads_file(out: Path) -> Path:
    """Where the sampled server writes its threads' names."""
    return out.with_name(out.stem + "-threads.json")


def serve(out: Path, argv: list[str]) -> None:
    """Run `corral <argv>` with the main thread sampled into `out` until it exits."""
    from corral.cli.main import main

    sampler = Sampler(threads_file(out))
    sampler.start()
    sys.argv = ["corral", *argv]
    try:
        main()
    finally:
        sampler.stop(out)


def main() -> None:
    """`OUT -- <corral arguments>`: run the server sampled."""
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        sys.exit("usage: python -m bench.server_sampler OUT -- server [options]")
    serve(Path(sys.argv[1]), sys.argv[3:])


if __name__ == "__main__":
    main()
