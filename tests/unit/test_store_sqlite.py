"""What the embedded backends do beyond the contract: sqlite persistence across reopen (keys,
history, txns, leases), the schema migration, the data-dir lock, URLs, status, lease TTL checks
and the watch machinery's batch boundaries."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest

from corral.store import DataDirLocked, StoreClosed, StoreError, _feed, open_store
from corral.store.base import Delete, Op, Put, Store, StoreStatus
from corral.store.memory import MemoryStore
from corral.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.support.store_backends import take

# A store file as schema version 1 wrote it: /a put twice, /b put, /c put then deleted.
V1_STORE = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE events (
    revision INTEGER PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
    prev_value BLOB, prev_create_revision INTEGER, prev_mod_revision INTEGER, prev_version INTEGER
);
INSERT INTO meta VALUES ('schema_version', 1), ('revision', 5);
INSERT INTO kv VALUES ('/a', x'32', 1, 2, 2), ('/b', x'78', 3, 3, 1);
INSERT INTO events VALUES
    (1, 'put', '/a', x'31', 1, 1, NULL, NULL, NULL, NULL),
    (2, 'put', '/a', x'32', 1, 2, x'31', 1, 1, 1),
    (3, 'put', '/b', x'78', 3, 1, NULL, NULL, NULL, NULL),
    (4, 'put', '/c', x'63', 4, 1, NULL, NULL, NULL, NULL),
    (5, 'delete', '/c', x'', 4, 0, x'63', 4, 4, 1);
"""


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


def test_a_version_1_store_is_migrated_in_place_keeping_everything(tmp_path: Path) -> None:
    """Opening a schema-1 file keeps its keys, revision and history and makes it version 2."""
    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.executescript(V1_STORE)

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        try:
            assert await store.revision() == 5
            kvs, _ = await store.range("/")
            assert [(kv.key, kv.value, kv.mod_revision, kv.version, kv.lease) for kv in kvs] == [
                ("/a", b"2", 2, 2, 0), ("/b", b"x", 3, 1, 0)
            ]
            got = await take(store.watch("/", start_revision=1), 5)
            assert [(e.type, e.kv.key, e.kv.mod_revision) for e in got] == [
                ("put", "/a", 1), ("put", "/a", 2), ("put", "/b", 3), ("put", "/c", 4),
                ("delete", "/c", 5),
            ]
            assert got[4].prev_kv is not None and (got[4].prev_kv.value, got[4].prev_kv.lease) == (
                b"c", 0
            )
            lease = await store.grant_lease(60)
            assert await store.txn([], [Put("/a", b"3", lease=lease), Delete("/b")]) == 6
        finally:
            await store.close()
        again = SqliteStore.open(tmp_path / "store.db")
        try:
            kv = await again.get("/a")
            assert kv is not None and (kv.value, kv.lease) == (b"3", lease)
        finally:
            await again.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "store.db") as conn:
        version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    assert version == (SCHEMA_VERSION,) == (2,)


def test_a_newer_schema_version_is_refused_with_the_file_named(tmp_path: Path) -> None:
    """A store file from a newer corral is not opened; the error names the file and version."""
    asyncio.run(SqliteStore.open(tmp_path / "store.db").close())
    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.execute("UPDATE meta SET value = 99 WHERE name = 'schema_version'")
    with pytest.raises(StoreError, match=r"store\.db has schema version 99"):
        SqliteStore.open(tmp_path / "store.db")


def test_txn_events_replay_from_the_file_at_one_revision(tmp_path: Path) -> None:
    """A txn's events survive reopen as one revision, in op order, with their leases."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        lease = await store.grant_lease(60)
        await store.put("/t/x", b"0")
        ops: list[Op] = [Put("/t/b", b"1", lease=lease), Delete("/t/x"), Put("/t/a", b"")]
        rev = await store.txn([], ops)
        await store.close()
        again = SqliteStore.open(tmp_path / "store.db")
        try:
            got = await take(again.watch("/t/", start_revision=rev), 3)
            assert [(e.kv.mod_revision, e.type, e.kv.key, e.kv.lease) for e in got] == [
                (rev, "put", "/t/b", lease), (rev, "delete", "/t/x", 0), (rev, "put", "/t/a", 0)
            ]
        finally:
            await again.close()

    asyncio.run(main())


def test_history_is_pruned_by_revisions_not_events(tmp_path: Path) -> None:
    """With history N, every event of the last N revisions stays, older ones go."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db", history=2)
        for r in range(4):
            await store.txn([], [Put(f"/p/{r}/{i}", b"v") for i in range(3)])
        await store.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "store.db") as conn:
        rows = conn.execute("SELECT revision, seq FROM events ORDER BY revision, seq").fetchall()
    assert rows == [(3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)]


def test_a_persisted_lease_gets_its_full_ttl_after_reopen(tmp_path: Path) -> None:
    """A lease outlives a closed store longer than its TTL; after reopen it runs a full TTL."""

    async def main() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        lease = await store.grant_lease(1)
        await store.put("/l/k", b"v", lease=lease)
        granted = time.monotonic()
        await store.close()
        while time.monotonic() < granted + 1.5:  # the TTL runs out while nothing is open
            await asyncio.sleep(0.05)
        again = SqliteStore.open(tmp_path / "store.db")
        opened = time.monotonic()
        try:
            kv = await again.get("/l/k")
            assert kv is not None and kv.lease == lease
            events = again.watch("/l/")
            (gone,) = await take(events, 1, timeout=15)
            assert (gone.type, gone.kv.key) == ("delete", "/l/k")
            assert time.monotonic() - opened >= 0.9
        finally:
            await again.close()
        third = SqliteStore.open(tmp_path / "store.db")
        try:
            assert await third.get("/l/k") is None
            with pytest.raises(StoreError, match="expired or revoked"):
                await third.keep_alive(lease)
        finally:
            await third.close()

    asyncio.run(main())


@pytest.mark.parametrize("ttl", [0, -1, 1.5])
def test_a_lease_ttl_must_be_whole_seconds_of_at_least_one(ttl: float) -> None:
    """grant_lease refuses a TTL below 1 s or not whole, naming the value."""

    async def main() -> None:
        store = MemoryStore()
        with pytest.raises(ValueError, match=f"got {ttl}"):
            await store.grant_lease(ttl)  # type: ignore[arg-type]

    asyncio.run(main())


def test_status_of_the_embedded_backends(tmp_path: Path) -> None:
    """memory and sqlite report themselves; a store file removed under sqlite makes it unhealthy."""

    async def main() -> None:
        memory = MemoryStore()
        assert await memory.status() == StoreStatus("memory", "memory://", True)
        store = SqliteStore.open(tmp_path / "store.db")
        try:
            endpoint = f"sqlite://{tmp_path}/store.db"
            assert await store.status() == StoreStatus("sqlite", endpoint, True)
            (tmp_path / "store.db").unlink()
            status = await store.status()
            assert (status.healthy, status.endpoint) == (False, endpoint)
            assert f"{tmp_path}/store.db was removed or replaced" in status.detail
        finally:
            await store.close()

    asyncio.run(main())


def open_backend(kind: str, path: Path) -> Store:
    """A memory or sqlite store (sqlite at `path`)."""
    return MemoryStore() if kind == "memory" else SqliteStore.open(path)


@pytest.mark.parametrize(
    ("kind", "reopen"), [("memory", False), ("sqlite", False), ("sqlite", True)]
)
def test_history_reads_never_cut_a_revision(
    kind: str, reopen: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a fetch batch smaller than a revision, a replaying watch (from memory or from the
    file) still gets every event once, in order, and then follows."""
    monkeypatch.setattr(_feed, "FETCH_BATCH", 2)

    async def main() -> None:
        store = open_backend(kind, tmp_path / "store.db")
        expected: list[tuple[int, str]] = []
        for r in range(5):
            keys = [f"/b/{r}/{i}" for i in range(3)]
            rev = await store.txn([], [*(Put(k, b"v") for k in keys), Put(f"/x/{r}", b"-")])
            expected += [(rev, key) for key in keys]
        if reopen:
            await store.close()
            store = open_backend(kind, tmp_path / "store.db")
        try:
            events = store.watch("/b/", start_revision=1)
            got = await take(events, len(expected))
            assert [(e.kv.mod_revision, e.kv.key) for e in got] == expected
            rev = await store.put("/b/last", b"v")
            (last,) = await take(events, 1)
            assert (last.kv.mod_revision, last.kv.key) == (rev, "/b/last")
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_closing_the_store_ends_a_watch_only_between_revisions(kind: str, tmp_path: Path) -> None:
    """A watcher inside a revision when the store closes still gets the rest of it, then ends."""

    async def main() -> None:
        store = open_backend(kind, tmp_path / "store.db")
        events = store.watch("/c/")
        await store.txn([], [Put(f"/c/{i}", b"v") for i in range(3)])
        await store.put("/c/later", b"v")
        await take(events, 1)
        await store.close()
        rest = [e.kv.key async for e in events]
        assert rest == ["/c/1", "/c/2"]

    asyncio.run(main())
