"""The sqlite backend's tables, row conversions, and the in-place schema migration.

Schema version 2 (current):
- `meta (name, value)`: `schema_version`, and `revision`, the store revision (it survives even
  when history is pruned).
- `kv`: the current keys, with the `lease` each is attached to (0 = none).
- `events`: the last N revisions of history, the watch source; `(revision, seq)` is the key,
  `seq` the op order inside a revision (a txn or a lease's end writes several).
- `leases (id, ttl)`: live leases (deadlines are not stored: a reopened store gives each lease its
  full TTL again).

Version 1 had no leases, no `kv.lease`, and one event per revision (`revision` alone was the
key). Opening a version-1 file migrates it in place, in one transaction that keeps every key,
the revision and the history.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from corral.store.base import Event, KeyValue, StoreError

SCHEMA_VERSION = 2

_V1_TABLES = (
    """CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
    prev_value BLOB, prev_create_revision INTEGER, prev_mod_revision INTEGER, prev_version INTEGER
)""",
)
_META = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID"
)
_KV = """CREATE TABLE kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID"""
_EVENTS = """CREATE TABLE {name} (
    revision INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
    lease INTEGER NOT NULL, prev_value BLOB, prev_create_revision INTEGER,
    prev_mod_revision INTEGER, prev_version INTEGER, prev_lease INTEGER,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID"""
_LEASES = "CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL)"

KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"
EVENT_COLUMNS = (
    "revision, seq, type, key, value, create_revision, version, lease,"
    " prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease"
)
_V1_EVENT_COLUMNS = (
    "revision, 0, type, key, value, create_revision, version, 0,"
    " prev_value, prev_create_revision, prev_mod_revision, prev_version,"
    " CASE WHEN prev_value IS NULL THEN NULL ELSE 0 END"
)


def read_revision(conn: sqlite3.Connection) -> int:
    """The store revision recorded in a store database (0 when never written)."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
    return int(row[0]) if row else 0


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database to SCHEMA_VERSION (create it, or migrate version 1 in place). Runs
    inside the caller's transaction; raises StoreError for a version this code does not read."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables & {"meta", "kv", "events"}:
        conn.execute(_META)
        conn.execute(_KV)
        conn.execute(_EVENTS.format(name="events"))
        conn.execute(_LEASES)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        return
    conn.execute(_META)
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    version = 1 if row is None else int(row[0])  # version 1 wrote it on its first open
    if version == 1:
        _migrate_from_1(conn)
    elif version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, this corral reads versions 1 to "
            f"{SCHEMA_VERSION}; use the corral version that wrote it"
        )


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    for statement in _V1_TABLES:  # a version-1 file may predate its own first full open
        conn.execute(statement)
    conn.execute("ALTER TABLE kv ADD COLUMN lease INTEGER NOT NULL DEFAULT 0")
    conn.execute(_EVENTS.format(name="events_v2"))
    conn.execute(f"INSERT INTO events_v2 ({EVENT_COLUMNS}) SELECT {_V1_EVENT_COLUMNS} FROM events")
    conn.execute("DROP TABLE events")
    conn.execute("ALTER TABLE events_v2 RENAME TO events")
    conn.execute(_LEASES)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


def kv_from_row(row: Any) -> KeyValue:
    """A KeyValue from a `kv` row (KV_COLUMNS order)."""
    return KeyValue(row[0], bytes(row[1]), row[2], row[3], row[4], row[5])


def event_from_row(row: Any) -> Event:
    """An Event from an `events` row (EVENT_COLUMNS order)."""
    revision, _, kind, key, value, create_rev, version, lease = row[:8]
    prev = None
    if row[8] is not None:
        prev = KeyValue(key, bytes(row[8]), row[9], row[10], row[11], row[12] or 0)
    return Event(kind, KeyValue(key, bytes(value), create_rev, revision, version, lease), prev)


def event_row(event: Event, seq: int) -> tuple[Any, ...]:
    """The `events` row (EVENT_COLUMNS order) for `event`, the `seq`-th of its revision."""
    kv, prev = event.kv, event.prev_kv
    return (
        kv.mod_revision, seq, event.type, kv.key, kv.value, kv.create_revision, kv.version,
        kv.lease,
        None if prev is None else prev.value,
        None if prev is None else prev.create_revision,
        None if prev is None else prev.mod_revision,
        None if prev is None else prev.version,
        None if prev is None else prev.lease,
    )
