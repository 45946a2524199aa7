"""Revisioned key/value store with watch (etcd-shaped): sqlite, memory, etcd.

`open_store(url_or_path)` picks a backend that opens at once: `sqlite:///abs/path/store.db` (or
a plain path: a directory means `<dir>/store.db`), `memory://`. `await connect_store(url)` also
serves `etcd://...` (corral.store.registry lists the backends; corral.store.etcd has the etcd
options).
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
from corral.store.registry import connect_url, open_url

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
    "connect_store",
    "open_store",
]


def open_store(url_or_path: str | Path, *, history: int = DEFAULT_HISTORY_REVISIONS) -> Store:
    """A store for `url_or_path`: `sqlite:///path/store.db`, `memory://`, or a filesystem path
    (a directory holds `store.db`). Raises ValueError for an unknown scheme, or for a backend
    that must connect first (etcd: use `connect_store`)."""
    return open_url(url_or_path, history)


async def connect_store(
    url_or_path: str | Path, *, history: int = DEFAULT_HISTORY_REVISIONS
) -> Store:
    """A store of any backend, including `etcd://host:2379,...?cafile=...` (which reaches the
    cluster before returning; see corral.store.etcd.connect_etcd for its errors)."""
    return await connect_url(url_or_path, history)
