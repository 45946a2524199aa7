"""The sampled `corral server` of `python -m bench.server_profile` (it imports nothing from the
rest of bench/ but bench.sampler, which needs only the standard library, so a server of another
source tree can run under it).

    python -m bench.server_sampler OUT -- server <corral server arguments>

Samples the main thread's Python stack on SIGPROF (bench.sampler: a timer on the process's CPU
time, the figures scaled by the CPU time measured), times the garbage collector's passes, starts
over on SIGUSR1 (writing the threads' names next to OUT), and writes the counts to OUT (JSON)
when the server exits.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from bench.sampler import Sampler


class ServerSampler(Sampler):
    """bench.sampler's Sampler, timing garbage collections, that starts over on SIGUSR1 (sent
    after the warm-up) and then writes the threads' names to `threads_path`."""

    def __init__(self, threads_path: Path) -> None:
        self.threads_path = threads_path
        super().__init__(keep=400, time_gc=True)

    def reset(self, *_: object) -> None:
        """Forget every sample so far; write the threads' names (by native id) for the
        harness, which times each thread."""
        names = {str(t.native_id): t.name for t in threading.enumerate()}
        self.threads_path.write_text(json.dumps(names))
        super().reset()

    def start(self) -> None:
        """Sample from now on; start over on SIGUSR1."""
        signal.signal(signal.SIGUSR1, self.reset)
        super().start()


def threads_file(out: Path) -> Path:
    """Where the sampled server writes its threads' names."""
    return out.with_name(out.stem + "-threads.json")


def serve(out: Path, argv: list[str]) -> None:
    """Run `corral <argv>` with the main thread sampled into `out` until it exits."""
    from corral.cli.main import main

    sampler = ServerSampler(threads_file(out))
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
