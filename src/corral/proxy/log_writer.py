"""Log output that never blocks the event loop, and an error log a client cannot flood.

A pipe nobody reads (a stalled terminal, a slow log collector) or a slow disk makes `write()`
wait; on the event loop that would stall every connection of the worker. `LogWriter` hands
the bytes to a thread of its own, which does the waiting; past `max_pending_bytes` waiting to be
written it drops what comes and counts it (`dropped_bytes`), so memory stays bounded too.

Error lines come from what clients do (one per rejected request), so `ErrorLog` writes at most
`lines_per_second` of them each second and then says how many it left out.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

DEFAULT_MAX_PENDING_BYTES = 4 * 1024 * 1024
ERROR_LINES_PER_S = 50
CLOSE_WAIT_S = 2.0


class LogWriter:
    """Bytes to one file descriptor, written by a background thread (started on first use)."""

    __slots__ = (
        "_chunks",
        "_closed",
        "_fd",
        "_owned",
        "_pending",
        "_thread",
        "_wake",
        "dropped_bytes",
        "max_pending_bytes",
    )

    def __init__(
        self, fd: int, *, owned: bool = False, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    ) -> None:
        self._fd = fd
        self._owned = owned  # close the descriptor in close()
        self.max_pending_bytes = max_pending_bytes
        self._chunks: deque[bytes] = deque()
        self._pending = 0
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped_bytes = 0

    def write(self, data: bytes) -> None:
        """Queue `data` for writing; returns at once (drops it when too much is waiting)."""
        if not data or self._closed:
            return
        with self._wake:
            if self._pending + len(data) > self.max_pending_bytes:
                self.dropped_bytes += len(data)
                return
            self._chunks.append(data)
            self._pending += len(data)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"log-writer-fd{self._fd}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet written."""
        return self._pending

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._chunks and not self._closed:
                    self._wake.wait()
                if not self._chunks:
                    return  # closed and everything written
                data = b"".join(self._chunks)
                self._chunks.clear()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                pass  # a full disk or a closed pipe loses log lines, never requests
            with self._wake:
                self._pending -= len(data)

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> None:
        """Write what is queued (waiting at most `timeout_s` for a slow reader), then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._owned and (self._thread is None or not self._thread.is_alive()):
            os.close(self._fd)


class ErrorLog:
    """Timestamped `corral lb:` lines, at most `lines_per_second` per second."""

    __slots__ = ("_clock", "_count", "_suppressed", "_window", "lines_per_second", "writer")

    def __init__(
        self,
        writer: LogWriter,
        *,
        lines_per_second: int = ERROR_LINES_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.lines_per_second = lines_per_second
        self._clock = clock
        self._window = clock()
        self._count = 0
        self._suppressed = 0

    def error(self, message: str) -> None:
        """One error line, unless this second's share is used up (then it is counted)."""
        self._roll(self._clock())
        if self._count >= self.lines_per_second:
            self._suppressed += 1
            return
        self._count += 1
        self._write(message)

    def notice(self, message: str) -> None:
        """A line about the proxy's own state (an endpoint up or down): never rate-limited."""
        self._write(message)

    def flush(self) -> None:
        """Report the lines left out once their second is over (the engine calls this per tick)."""
        self._roll(self._clock())

    def _roll(self, now: float) -> None:
        if now - self._window < 1.0:
            return
        self._window = now
        self._count = 0
        if self._suppressed:
            suppressed, self._suppressed = self._suppressed, 0
            self._write(
                f"{suppressed} more error line(s) not written (at most "
                f"{self.lines_per_second} per second)"
            )

    def _write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.writer.write(f"{stamp} corral lb: {message}\n".encode("utf-8", "replace"))
