"""Revisioned key/value store with watch (etcd-shaped): sqlite, memory, later etcd.

`open_store(url_or_path)` picks the backend: `sqlite:///abs/path/store.db` (or a plain path: a
directory means `<dir>/store.db`), `memory://`.
"""

from __future__ import annotations

from pathlib import Path

from corral.store._feed import DEFAULT_HISTORY_REVISIONS, StoreClosed
from corral.store.base import (
    Compacted,
    CompareFailed,
    Event,
    KeyValue,
    Store,
    StoreError,
)
from corral.store.lock import DataDirLocked

__all__ = [
    "DEFAULT_HISTORY_REVISIONS",
    "Compacted",
    "CompareFailed",
    "DataDirLocked",
    "Event",
    "KeyValue",
    "Store",
    "StoreClosed",
    "StoreError",
    "open_store",
]


def open_store(url_or_path: str | Path, *, history: int = DEFAULT_HISTORY_REVISIONS) -> Store:
    """A store for `url_or_path`: `sqlite:///path/store.db`, `memory://`, or a filesystem path
    (a directory holds `store.db`). Raises ValueError for an unknown scheme."""
    from corral.store.memory import MemoryStore
    from corral.store.sqlite import STORE_FILE_NAME, SqliteStore

    text = str(url_or_path)
    if text == "memory://" or text == "memory:":
        return MemoryStore(history=history)
    if text.startswith("sqlite://"):
        path = Path(text.removeprefix("sqlite://"))
        if not path.is_absolute() or not path.name:
            raise ValueError(
                f"store URL {text!r}: use sqlite:///absolute/path/store.db (three slashes)"
            )
        return SqliteStore.open(path, history=history)
    if "://" in text:
        raise ValueError(
            f"store URL {text!r}: unknown scheme; use sqlite:///path/store.db or memory://"
        )
    path = Path(text)
    if path.is_dir() or not path.suffix:
        path = path / STORE_FILE_NAME
    return SqliteStore.open(path, history=history)
