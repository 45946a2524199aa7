"""The embedded default store: one SQLite file (`store.db`) in the data directory.

WAL journal with `synchronous=NORMAL`: a commit is in the WAL before `put`/`txn` returns, so a
process kill (-9) loses nothing committed (a power cut may lose the last moments; that is
SQLite's WAL trade-off). Calls run directly on the event loop, one at a time: each is a few tens
of microseconds, and it keeps revision order strict without locks. A single process owns the
file (`store.lock`, see `corral.store.lock`). Tables and the schema migration: `_sqlite_schema`.

Leases are rows of `leases` and the `lease` column of `kv`; their deadlines are kept in memory
only, so after a reopen every lease has its full TTL again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from corral.store._feed import DEFAULT_HISTORY_REVISIONS, Revision, WatchableStore, scan_recent
from corral.store._leases import LeaseTable, validate_ttl
from corral.store._rules import plan_txn, prefix_end, single_key_compares
from corral.store._sqlite_schema import (
    EVENT_COLUMNS,
    KV_COLUMNS,
    SCHEMA_VERSION,
    event_from_row,
    event_row,
    kv_from_row,
    prepare,
    read_revision,
)
from corral.store.base import Compare, Delete, Event, KeyValue, Op, Put, StoreError, StoreStatus
from corral.store.lock import DataDirLock

__all__ = [
    "RECENT_REVISIONS",
    "SCHEMA_VERSION",
    "STORE_FILE_NAME",
    "SqliteStore",
    "connect",
    "read_revision",
]

STORE_FILE_NAME = "store.db"
#: Recent revisions kept in memory so live watchers never read the database.
RECENT_REVISIONS = 2048

_EVENT_PLACEHOLDERS = ", ".join("?" * len(EVENT_COLUMNS.split(",")))


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the store's pragmas."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _prefix_clause(prefix: str) -> tuple[str, list[Any]]:
    """SQL (`AND ...`) and its arguments limiting `key` to those under `prefix`."""
    if not prefix:
        return "", []
    end = prefix_end(prefix)
    if end is None:
        return " AND key >= ?", [prefix]
    return " AND key >= ? AND key < ?", [prefix, end]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class SqliteStore(WatchableStore):
    """The SQLite backend. Build it with `SqliteStore.open(path)` (a plain, synchronous call)."""

    def __init__(self, conn: sqlite3.Connection, lock: DataDirLock, path: Path, history: int):
        super().__init__(history)
        self.path = path
        self._conn = conn
        self._lock = lock
        self._recent: deque[Revision] = deque(maxlen=min(RECENT_REVISIONS, self._history))
        self._leases = LeaseTable(self._end_lease)
        self._identity = _identity(path)

    @classmethod
    def open(cls, path: Path, *, history: int = DEFAULT_HISTORY_REVISIONS) -> SqliteStore:
        """Open (creating or migrating if needed) the store file `path`, taking its directory's
        lock; raises DataDirLocked when another process holds it and StoreError when the file is
        unusable."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = DataDirLock(path.parent).acquire()
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(path)
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
        with self._transaction("cannot open it") as conn:
            prepare(conn, self.path)
            self._rev = read_revision(conn)
            conn.execute("DELETE FROM events WHERE revision < ?", (self._oldest_kept(),))
            leases = conn.execute("SELECT id, ttl FROM leases").fetchall()
            attached = conn.execute("SELECT key, lease FROM kv WHERE lease != 0").fetchall()
        keys: dict[int, list[str]] = {}
        for key, lease in attached:
            keys.setdefault(lease, []).append(key)
        for lease, ttl in leases:
            self._leases.add(lease, ttl, keys.pop(lease, ()))
        for lease, orphans in keys.items():  # attached to a lease that is gone: they go now
            self._leases.add(lease, 0, orphans)

    @contextlib.contextmanager
    def _transaction(self, what: str = "write failed") -> Iterator[sqlite3.Connection]:
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
            raise StoreError(f"store {self.path}: {what}: {exc}") from exc

    def _check_open(self) -> None:
        super()._check_open()
        self._leases.arm()

    def _current(self, key: str) -> KeyValue | None:
        row = self._conn.execute(f"SELECT {KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else kv_from_row(row)

    # -- reading -------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self._current(key)

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None
    ) -> tuple[list[KeyValue], int]:
        self._check_open()
        sql = f"SELECT {KV_COLUMNS} FROM kv WHERE "
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
        return [kv_from_row(row) for row in rows], self._rev

    async def revision(self) -> int:
        self._check_open()
        return self._rev

    async def status(self) -> StoreStatus:
        endpoint = f"sqlite://{self.path.absolute()}"
        problem = self._problem()
        return StoreStatus("sqlite", endpoint, not problem, detail=problem)

    def _problem(self) -> str:
        """Why writes would not be kept, or "" when the store is usable."""
        if self._closed:
            return "the store is closed"
        if _identity(self.path) != self._identity:
            return (
                f"store file {self.path} was removed or replaced while open; writes would be "
                "lost: stop the server and restore the data directory from a backup"
            )
        try:
            self._conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            return f"store file {self.path} cannot be read: {exc}"
        return ""

    # -- writing -------------------------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, expected_mod_revision: int | None = None, lease: int = 0
    ) -> int:
        self._check_open()
        self._leases.expire_due()
        self._commit(single_key_compares(key, expected_mod_revision), [Put(key, value, lease)])
        return self._rev

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int | None:
        self._check_open()
        self._leases.expire_due()
        events = self._commit(single_key_compares(key, expected_mod_revision), [Delete(key)])
        return self._rev if events else None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        self._check_open()
        self._leases.expire_due()
        self._commit(compares, ops)
        return self._rev

    async def grant_lease(self, ttl: int) -> int:
        self._check_open()
        validate_ttl(ttl)
        self._leases.expire_due()
        lease = self._leases.new_id()
        with self._transaction() as conn:
            conn.execute("INSERT INTO leases (id, ttl) VALUES (?, ?)", (lease, ttl))
        self._leases.add(lease, ttl)
        return lease

    async def keep_alive(self, lease: int) -> int:
        self._check_open()
        self._leases.expire_due()
        return self._leases.renew(lease)

    async def revoke_lease(self, lease: int) -> None:
        self._check_open()
        self._leases.expire_due()
        if lease in self._leases:
            self._end_lease(lease)

    def _end_lease(self, lease: int) -> None:
        """Delete the keys of `lease` and its row at one revision, then forget it."""
        self._commit([], [Delete(key) for key in self._leases.keys(lease)], end_lease=lease)
        self._leases.remove(lease)

    def _commit(
        self, compares: Sequence[Compare], ops: Sequence[Op], *, end_lease: int = 0
    ) -> list[Event]:
        """Plan one txn and commit it (with `end_lease`, also drop that lease's row); then
        publish its events. [] = nothing changed (no revision)."""
        with self._transaction() as conn:
            events = plan_txn(compares, ops, self._rev + 1, self._current, self._leases.alive)
            if events:
                self._store(conn, events)
            if end_lease:
                conn.execute("DELETE FROM leases WHERE id = ?", (end_lease,))
        if events:
            self._published(events)
        return events

    def _store(self, conn: sqlite3.Connection, events: list[Event]) -> None:
        revision = events[0].kv.mod_revision
        for event in events:
            kv = event.kv
            if event.type == "put":
                conn.execute(
                    f"INSERT OR REPLACE INTO kv ({KV_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease),
                )
            else:
                conn.execute("DELETE FROM kv WHERE key = ?", (kv.key,))
        conn.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({_EVENT_PLACEHOLDERS})",
            [event_row(event, seq) for seq, event in enumerate(events)],
        )
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (revision,))
        conn.execute("DELETE FROM events WHERE revision = ?", (revision - self._history,))

    def _published(self, events: list[Event]) -> None:
        """After the commit: the new revision becomes visible to readers and watchers."""
        self._rev = events[0].kv.mod_revision
        self._recent.append(tuple(events))
        self._leases.apply(events)
        self._committed()

    def _events_from(self, revision: int, prefix: str, limit: int) -> tuple[list[Event], int]:
        if self._recent and revision >= self._recent[0][0].kv.mod_revision:
            return scan_recent(self._recent, revision, prefix, limit, self._rev)
        where, args = _prefix_clause(prefix)
        rows = self._conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE revision >= ? AND revision <= ?{where}"
            f" ORDER BY revision, seq LIMIT {int(limit)}",
            [revision, self._rev, *args],
        ).fetchall()
        if len(rows) < limit:
            return [event_from_row(row) for row in rows], self._rev
        last_revision, last_seq = rows[-1][0], rows[-1][1]
        rows += self._conn.execute(  # the rest of the last revision: never cut one
            f"SELECT {EVENT_COLUMNS} FROM events WHERE revision = ? AND seq > ?{where}"
            " ORDER BY seq",
            [last_revision, last_seq, *args],
        ).fetchall()
        return [event_from_row(row) for row in rows], last_revision

    async def close(self) -> None:
        if self._closed:
            return
        self._leases.close()
        self._mark_closed()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._lock.release()
