"""The access log: one line per request, buffered and flushed by the engine's tick.

Line: `<client> "<METHOD> <path> HTTP/<v>" <status> <bytes> <upstream> <seconds>`. The query
string is never logged (it may carry tokens), nor are headers (Authorization, cookies). The
lines are written by a `LogWriter`, off the event loop.
"""

from __future__ import annotations

import os
import sys
import time

from corral.proxy.log_writer import LogWriter

FLUSH_AT_BYTES = 64 * 1024


class AccessLog:
    """Buffered writer to stdout, a file, or nowhere ("off")."""

    __slots__ = ("_buffer", "_size", "enabled", "writer")

    def __init__(self, target: str) -> None:
        self._buffer: list[str] = []
        self._size = 0
        self.enabled = target != "off"
        self.writer: LogWriter | None = None
        if target == "stdout":
            self.writer = LogWriter(sys.stdout.fileno())
        elif target != "off":
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self.writer = LogWriter(fd, owned=True)

    def log(
        self,
        client: bytes,
        method: bytes,
        target: bytes,
        protocol: str,
        status: int,
        sent: int,
        upstream: str,
        started: float,
    ) -> None:
        """Record one request."""
        path = target.split(b"?", 1)[0].decode("latin-1")
        line = '%s "%s %s %s" %d %d %s %.3f\n' % (  # noqa: UP031 - fastest here
            client.decode("latin-1"),
            method.decode("latin-1"),
            path,
            protocol,
            status,
            sent,
            upstream,
            time.monotonic() - started,
        )
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= FLUSH_AT_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered lines to the writer (never blocks, never raises)."""
        if not self._buffer:
            return
        data = "".join(self._buffer).encode("utf-8", "replace")
        self._buffer.clear()
        self._size = 0
        if self.writer is not None:
            self.writer.write(data)

    def close(self) -> None:
        """Flush, wait a moment for the writer, and release the file."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
