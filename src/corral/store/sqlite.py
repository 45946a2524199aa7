"""The embedded default store: one SQLite file (`store.db`) in the data directory.

WAL journal with `synchronous=NORMAL`: a commit is in the WAL before `put` returns, so a process
kill (-9) loses nothing committed (a power cut may lose the last moments; that is SQLite's WAL
trade-off). Calls run directly on the event loop, one at a time: each is a few tens of
microseconds, and it keeps revision order strict without locks. A single process owns the file
(`store.lock`, see `corral.store.lock`).

Tables: `kv` (the current keys), `events` (the last N revisions of history: the watch source) and
`meta` (`revision`, the store revision, which survives even when history is pruned).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corral.store._feed import DEFAULT_HISTORY_REVISIONS, WatchableStore
from corral.store._rules import check_compare, next_kv, prefix_end
from corral.store.base import Event, KeyValue, StoreError
from corral.store.lock import DataDirLock

STORE_FILE_NAME = "store.db"
SCHEMA_VERSION = 1
#: Recent events kept in memory so live watchers never read the database.
RECENT_EVENTS = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
    prev_value BLOB, prev_create_revision INTEGER, prev_mod_revision INTEGER, prev_version INTEGER
);
"""
_KV_COLUMNS = "key, value, create_revision, mod_revision, version"
_EVENT_COLUMNS = (
    "revision, type, key, value, create_revision, version,"
    " prev_value, prev_create_revision, prev_mod_revision, prev_version"
)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the store's pragmas."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def read_revision(conn: sqlite3.Connection) -> int:
    """The store revision recorded in a store database (0 when never written)."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
    return int(row[0]) if row else 0


def _kv(row: Any) -> KeyValue:
    return KeyValue(row[0], bytes(row[1]), row[2], row[3], row[4])


def _event(row: Any) -> Event:
    revision, kind, key, value, create_rev, version = row[:6]
    prev = None if row[6] is None else KeyValue(key, bytes(row[6]), row[7], row[8], row[9])
    return Event(kind, KeyValue(key, bytes(value), create_rev, revision, version), prev)


class SqliteStore(WatchableStore):
    """The SQLite backend. Build it with `SqliteStore.open(path)` (a plain, synchronous call)."""

    def __init__(self, conn: sqlite3.Connection, lock: DataDirLock, path: Path, history: int):
        super().__init__(history)
        self.path = path
        self._conn = conn
        self._lock = lock
        self._recent: deque[Event] = deque(maxlen=min(RECENT_EVENTS, self._history))

    @classmethod
    def open(cls, path: Path, *, history: int = DEFAULT_HISTORY_REVISIONS) -> SqliteStore:
        """Open (creating if needed) the store file `path`, taking its directory's lock; raises
        DataDirLocked when another process holds it and StoreError when the file is unusable."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = DataDirLock(path.parent).acquire()
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(path)
            conn.executescript(_SCHEMA)
            store = cls(conn, lock, path, history)
            store._load()
        except BaseException as exc:
            if conn is not None:
                conn.close()
            lock.release()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {path}: {exc}") from exc
            raise
        return store

    def _load(self) -> None:
        with self._transaction():
            version = self._conn.execute(
                "SELECT value FROM meta WHERE name = 'schema_version'"
            ).fetchone()
            if version is None:
                self._conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
            elif version[0] != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version[0]}, this corral reads "
                    f"{SCHEMA_VERSION}; use the matching corral version"
                )
            self._rev = read_revision(self._conn)
            self._conn.execute("DELETE FROM events WHERE revision < ?", (self._oldest_kept(),))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise StoreError(f"store {self.path}: write failed: {exc}") from exc

    def _current(self, key: str) -> KeyValue | None:
        row = self._conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else _kv(row)

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self._current(key)

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None
    ) -> tuple[list[KeyValue], int]:
        self._check_open()
        sql = f"SELECT {_KV_COLUMNS} FROM kv WHERE "
        if start_after is not None and start_after >= prefix:
            sql, args = sql + "key > ?", [start_after]
        else:
            sql, args = sql + "key >= ?", [prefix]
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        sql += " ORDER BY key"
        if limit > 0:
            sql += f" LIMIT {int(limit)}"
        rows = self._conn.execute(sql, args).fetchall()
        return [_kv(row) for row in rows], self._rev

    async def put(self, key: str, value: bytes, *, expected_mod_revision: int | None = None) -> int:
        self._check_open()
        with self._transaction() as conn:
            prev = self._current(key)
            check_compare(key, prev, expected_mod_revision)
            revision = self._rev + 1
            kv = next_kv(key, bytes(value), prev, revision)
            conn.execute(
                f"INSERT OR REPLACE INTO kv ({_KV_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version),
            )
            event = Event("put", kv, prev)
            self._append_event(conn, event)
        self._published(event)
        return revision

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        self._check_open()
        with self._transaction() as conn:
            prev = self._current(key)
            check_compare(key, prev, expected_mod_revision)
            if prev is None:
                return None
            revision = self._rev + 1
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            event = Event("delete", KeyValue(key, b"", prev.create_revision, revision, 0), prev)
            self._append_event(conn, event)
        self._published(event)
        return revision

    def _append_event(self, conn: sqlite3.Connection, event: Event) -> None:
        kv, prev = event.kv, event.prev_kv
        conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kv.mod_revision, event.type, kv.key, kv.value, kv.create_revision, kv.version,
                None if prev is None else prev.value,
                None if prev is None else prev.create_revision,
                None if prev is None else prev.mod_revision,
                None if prev is None else prev.version,
            ),
        )
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (kv.mod_revision,)
        )
        conn.execute("DELETE FROM events WHERE revision = ?", (kv.mod_revision - self._history,))

    def _published(self, event: Event) -> None:
        """After the commit: the new revision becomes visible to readers and watchers."""
        self._rev = event.kv.mod_revision
        self._recent.append(event)
        self._committed()

    def _events_from(self, revision: int, prefix: str, limit: int) -> list[Event]:
        if self._recent and revision >= self._recent[0].kv.mod_revision:
            skip = revision - self._recent[0].kv.mod_revision  # revisions are contiguous
            found: list[Event] = []
            for event in itertools.islice(self._recent, skip, None):
                if event.kv.key.startswith(prefix):
                    found.append(event)
                    if len(found) >= limit:
                        break
            return found
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE revision >= ? AND revision <= ?"
        args: list[Any] = [revision, self._rev]
        if prefix:
            sql += " AND key >= ?"
            args.append(prefix)
            end = prefix_end(prefix)
            if end is not None:
                sql += " AND key < ?"
                args.append(end)
        rows = self._conn.execute(sql + f" ORDER BY revision LIMIT {int(limit)}", args).fetchall()
        return [_event(row) for row in rows]

    async def revision(self) -> int:
        self._check_open()
        return self._rev

    async def close(self) -> None:
        if self._closed:
            return
        self._mark_closed()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._lock.release()
