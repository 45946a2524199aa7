"""The audit file writer: records become JSON lines in `write()`, a writer thread does the I/O.

`AuditLog.write()` renders the record (redaction and timestamp formatting happen here, after
the response has gone) and appends the line to a bounded backlog, so the event loop never waits
on the disk. The writer thread wakes at most every BATCH_INTERVAL_SECONDS, writes the waiting
lines with one `os.write` per file, and rotates by size. A full backlog drops the record; an I/O
error drops the batch; both are counted in `stats()`, and neither ever reaches the caller.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from corral.server.audit_record import LineSource, render_line
from corral.server.audit_rotate import prune, rotate
from corral.server.audit_settings import AuditSettings

#: Records waiting for the writer before new ones are dropped.
MAX_BACKLOG_RECORDS = 100_000
#: Body bytes waiting for the writer before new records are dropped.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
#: How long the writer lets records gather after writing a batch (the flush latency).
BATCH_INTERVAL_SECONDS = 0.02


class AuditLog:
    """Owns the audit file: writes, rotates, prunes, counts. Thread-safe `write()`."""

    def __init__(self, settings: AuditSettings, *, rotate_bytes: int | None = None) -> None:
        """`rotate_bytes` overrides `settings.max_size_mb` (tests use small files)."""
        self.settings = settings
        self.path = Path(settings.path)
        self.max_bytes = rotate_bytes or settings.max_size_mb * 1024 * 1024
        self._lock = threading.Condition(threading.Lock())
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_bytes = 0
        self._closing = False
        self._writer_idle = False
        self._stopping = threading.Event()
        self._counts = {"written": 0, "dropped": 0, "errors": 0, "rotations": 0}
        self._fd: int | None = None
        self._size = 0
        self._broken_line = False
        self._last_rotation: datetime | None = None
        self._pruned_at_start = False
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="corral-audit-writer", daemon=True)
        self._thread.start()

    def write(self, record: dict[str, Any] | LineSource) -> None:
        """Render one record (a dict, or an object that renders itself: the middleware's) to its
        JSON line and queue it for the writer thread. Never raises, never waits on the disk; a
        record that does not fit the backlog is dropped and counted.

        Rendering happens here, on the caller's thread, on purpose: the GIL lets one thread
        run Python at a time, so a writer thread rendering would save the server no CPU, only
        add thread switches and hold the event loop up while it renders."""
        try:
            line = render_line(record) if isinstance(record, dict) else record.render_line()
        except Exception as exc:  # a caller's odd value must not reach the request
            self._failed(f"cannot render an audit record: {exc}", 1)
            return
        with self._lock:
            if (
                self._closing
                or len(self._backlog) >= MAX_BACKLOG_RECORDS
                or self._backlog_bytes + len(line) > MAX_BACKLOG_BYTES
            ):
                self._counts["dropped"] += 1
                return
            self._backlog.append(line)
            self._backlog_bytes += len(line)
            if len(self._backlog) == 1 and self._writer_idle:
                self._lock.notify()

    def stats(self) -> dict[str, int]:
        """Counters for /healthz?verbose: written, dropped, errors, rotations, pending."""
        with self._lock:
            return {**self._counts, "pending": len(self._backlog)}

    def close(self) -> None:
        """Write everything queued so far, stop the writer thread and close the file."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._stopping.set()
        self._thread.join()

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._backlog and not self._closing:
                    self._writer_idle = True
                    self._lock.wait()
                    self._writer_idle = False
                batch, batch_bytes = list(self._backlog), self._backlog_bytes
                self._backlog.clear()
                self._backlog_bytes = 0
                done = self._closing
            if batch:
                try:
                    self._write_batch(batch, batch_bytes)
                except Exception as exc:  # keep the writer alive whatever happens
                    self._failed(f"audit writer error: {exc!r}", len(batch))
            if done and not batch:
                break
            # Let the next batch gather: one wake-up per interval instead of one per record
            # (waking a thread per record costs the event loop more than rendering it).
            self._stopping.wait(BATCH_INTERVAL_SECONDS)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def _write_batch(self, lines: list[bytes], total: int) -> None:
        """Write `lines` (`total` bytes), rotating before a run of them that does not fit."""
        start = 0
        while start < len(lines):
            if start == 0 and total <= self.max_bytes:  # the usual case: one run, all of it
                end, size = len(lines), total
            else:
                end = self._fitting(lines, start)
                size = sum(len(line) for line in lines[start:end])
            try:
                self._ensure_room(size)
                self._write_all(b"".join(lines[start:end]))
            except OSError as exc:
                error = exc.strerror or str(exc)
                self._failed(f"cannot write audit log {self.path}: {error}", len(lines) - start)
                self._close_file()
                return
            self._count("written", end - start)
            start = end

    def _fitting(self, lines: list[bytes], start: int) -> int:
        """End of the run of lines from `start` that fits one file (at least one line)."""
        room = self.max_bytes
        end = start
        while end < len(lines) and (end == start or room >= len(lines[end])):
            room -= len(lines[end])
            end += 1
        return end

    def _failed(self, message: str, records: int) -> None:
        self.last_error = message
        with self._lock:
            self._counts["errors"] += 1
            self._counts["dropped"] += records

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if not self._pruned_at_start:  # lumberjack also prunes when it first opens
                self._pruned_at_start = True
                prune(
                    self.path,
                    max_backups=self.settings.max_backups,
                    max_age_days=self.settings.max_age_days,
                )
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _ensure_room(self, incoming: int) -> None:
        self._open()
        if self._size == 0 or self._size + incoming <= self.max_bytes:
            return
        self._close_file()
        backup = rotate(
            self.path,
            max_backups=self.settings.max_backups,
            max_age_days=self.settings.max_age_days,
            after=self._last_rotation,
        )
        self._last_rotation = backup.rotated_at
        self._count("rotations")
        self._broken_line = False
        self._open()

    def _write_all(self, data: bytes) -> None:
        fd = self._open()
        if self._broken_line:  # an earlier failure left half a line: end it first
            data = b"\n" + data
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except OSError:
                self._broken_line = len(view) < len(data)
                raise
            view = view[written:]
            self._size += written
        self._broken_line = False
