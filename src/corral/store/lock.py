"""One process owns a data directory: an exclusive `fcntl` lock on `store.lock` with its pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from corral.store.base import StoreError

LOCK_FILE_NAME = "store.lock"


class DataDirLocked(StoreError):
    """Another process holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"data directory {data_dir} is in use by another corral server ({who}); "
            "stop that server or use another --data-dir"
        )
        self.data_dir = data_dir
        self.pid = pid


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DataDirLock:
    """An exclusive, non-blocking lock on `<data_dir>/store.lock`; released on close or when the
    process dies (the kernel drops fcntl locks), so a stale file never blocks a restart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise DataDirLocked naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(self.data_dir, _read_pid(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only a hint)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def is_locked(data_dir: Path) -> int | None:
    """The pid holding `data_dir` (0 when unknown) if a live process holds it, else None."""
    path = data_dir / LOCK_FILE_NAME
    if not path.exists():
        return None
    try:
        DataDirLock(data_dir).acquire().release()
    except DataDirLocked as exc:
        return exc.pid or 0
    return None
