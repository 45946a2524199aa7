"""Progress lines in RKE's manner: `INFO[0003] [etcd] Starting etcd member on node [127.0.1.1]`.

The number is the whole seconds since the run began; the bracketed word is the phase
(`[certificates]`, `[etcd]`, `[server]`, `[ingress]`, `[lb]`, `[remove]`, `[kubeconfig]`,
`[outputs]`, `[healthcheck]`); one line per node and step. Levels are RKE's: INFO, WARN, FATA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Writes timestamped lines to `out` (stdout by default)."""

    def __init__(
        self, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self.lines: list[str] = []

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run began."""
        return self.clock() - self.started

    def _emit(self, level: str, message: str) -> None:
        stamp = f"{level}[{int(self.elapsed_s):04d}]"
        for i, text in enumerate(message.splitlines() or [""]):
            line = f"{stamp} {text}" if i == 0 else f"{' ' * len(stamp)} {text}"
            self.lines.append(line)
            print(line, file=self.out, flush=True)

    def info(self, message: str, phase: str = "") -> None:
        """An INFO line, `[phase] message` when a phase is given."""
        self._emit("INFO", f"[{phase}] {message}" if phase else message)

    def warn(self, message: str, phase: str = "") -> None:
        """A WARN line."""
        self._emit("WARN", f"[{phase}] {message}" if phase else message)

    def fatal(self, message: str, phase: str = "") -> None:
        """A FATA line (the run stops after it)."""
        self._emit("FATA", f"[{phase}] {message}" if phase else message)

    def plain(self, message: str = "") -> None:
        """A line without a timestamp (the final summary)."""
        self.lines.append(message)
        print(message, file=self.out, flush=True)
