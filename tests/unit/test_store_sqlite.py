"""What only the sqlite backend does: persistence across reopen, the data-dir lock, URLs."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from corral.store import DataDirLocked, StoreClosed, StoreError, open_store
from corral.store.memory import MemoryStore
from corral.store.sqlite import SqliteStore


def test_reopen_keeps_keys_revision_and_history(tmp_path: Path) -> None:
    """Keys, the revision and watchable history survive close and reopen."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        await store.put("/a", b"1")
        await store.put("/b", b"2")
        await store.delete("/a")
        await store.close()
        again = SqliteStore.open(tmp_path / "store.db")
        try:
            assert await again.revision() == 3
            assert await again.get("/a") is None
            kv = await again.get("/b")
            assert kv is not None and kv.value == b"2"
            events = again.watch("/", start_revision=1)
            got = [await asyncio.wait_for(anext(events), 5) for _ in range(3)]
            assert [(e.type, e.kv.key) for e in got] == [
                ("put", "/a"), ("put", "/b"), ("delete", "/a")
            ]
            assert got[2].prev_kv is not None and got[2].prev_kv.value == b"1"
            assert await again.put("/c", b"3") == 4
        finally:
            await again.close()

    asyncio.run(main())


def test_history_is_pruned_to_the_configured_size(tmp_path: Path) -> None:
    """The events table holds at most the last N revisions."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db", history=3)
        for i in range(10):
            await store.put(f"/k{i % 2}", b"v")
        await store.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "store.db") as conn:
        revs = [row[0] for row in conn.execute("SELECT revision FROM events ORDER BY revision")]
    assert revs == [8, 9, 10]


def test_second_open_of_a_held_data_dir_names_the_owner(tmp_path: Path) -> None:
    """A second open fails with the data directory and the owner's pid; after close it works."""

    async def main() -> None:
        first = SqliteStore.open(tmp_path / "store.db")
        with pytest.raises(DataDirLocked) as info:
            SqliteStore.open(tmp_path / "store.db")
        assert f"data directory {tmp_path} is in use by another corral server" in str(info.value)
        assert f"(pid {os.getpid()})" in str(info.value)
        await first.close()
        second = SqliteStore.open(tmp_path / "store.db")
        await second.close()

    asyncio.run(main())


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    """Calls after close raise StoreClosed instead of touching a closed connection."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        await store.close()
        with pytest.raises(StoreClosed):
            await store.get("/a")

    asyncio.run(main())


def test_wal_mode_is_on(tmp_path: Path) -> None:
    """The database file is in WAL journal mode (what makes kill -9 safe with NORMAL sync)."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        await store.put("/a", b"1")
        await store.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    """A corrupt store.db raises StoreError naming the file, and releases the lock."""
    (tmp_path / "store.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=str(tmp_path / "store.db")):
        SqliteStore.open(tmp_path / "store.db")
    (tmp_path / "store.db").unlink()
    asyncio.run(SqliteStore.open(tmp_path / "store.db").close())


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("memory://", MemoryStore), ("sqlite://{d}/s.db", SqliteStore), ("{d}", SqliteStore)],
)
def test_open_store_picks_the_backend(tmp_path: Path, spec: str, kind: type) -> None:
    """open_store understands memory://, sqlite:///path and a plain data directory."""
    store = open_store(spec.format(d=tmp_path))
    assert isinstance(store, kind)
    asyncio.run(store.close())
    if spec == "{d}":
        assert (tmp_path / "store.db").exists()


@pytest.mark.parametrize("spec", ["etcd://x", "sqlite://relative/s.db"])
def test_open_store_rejects_unusable_urls(spec: str) -> None:
    """An unknown scheme or a relative sqlite URL is a ValueError that shows the right form."""
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(spec)
