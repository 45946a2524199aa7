"""Back up and restore a server's data directory (`corral server backup` / `restore`).

The archive is a `.tar.gz` holding `manifest.json` (corral version, time, store revision, and
every file with its size, mode and sha256) and the files under `data/`. `store.db` is copied with
SQLite's online backup API, a consistent snapshot even while the server writes (a live WAL
database file is never copied raw); every other regular file of the data directory (certificates,
keys, ...) is copied as it is. The archive appears atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral import __version__
from corral.store.lock import LOCK_FILE_NAME, DataDirLock, DataDirLocked, is_locked
from corral.store.sqlite import STORE_FILE_NAME, read_revision

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
DATA_PREFIX = "data/"
# Files that belong to a live database or process, never to a backup.
SKIPPED_NAMES = frozenset(
    {LOCK_FILE_NAME} | {f"{STORE_FILE_NAME}-{suffix}" for suffix in ("wal", "shm", "journal")}
)


class BackupError(RuntimeError):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class BackupFile:
    """One file of the data directory as archived."""

    path: str  # relative to the data directory, `/`-separated
    size: int
    mode: int
    sha256: str


@dataclass(frozen=True)
class BackupInfo:
    """What an archive holds (and, after a restore, where the old data went)."""

    archive: Path
    corral_version: str
    created: str  # RFC 3339, UTC
    store_revision: int
    files: tuple[BackupFile, ...]
    moved_aside: Path | None = None

    def manifest(self) -> dict[str, Any]:
        """The manifest.json content."""
        return {
            "format": MANIFEST_FORMAT,
            "corralVersion": self.corral_version,
            "created": self.created,
            "storeRevision": self.store_revision,
            "files": [vars(f) for f in self.files],
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _snapshot_store(source: Path, target: Path) -> int:
    """Copy the store with SQLite's online backup API; returns the snapshot's revision."""
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True)
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # one step: a consistent snapshot, writers are not blocked (WAL)
            dst.execute("PRAGMA journal_mode = DELETE")  # self-contained file, no -wal beside it
            return read_revision(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _data_files(data_dir: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(data_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if name in SKIPPED_NAMES or not path.is_file() or path.is_symlink():
                continue
            if path.relative_to(data_dir).as_posix() == STORE_FILE_NAME:
                continue
            yield path


def backup(data_dir: Path, out: Path) -> BackupInfo:
    """Write a consistent `.tar.gz` snapshot of `data_dir` to `out` (safe while the server
    runs). Raises BackupError when the directory is missing or `out` is unusable."""
    data_dir, out = Path(data_dir).absolute(), Path(out).absolute()
    if not data_dir.is_dir():
        raise BackupError(f"data directory {data_dir} does not exist; check --data-dir")
    if out.is_dir():
        raise BackupError(f"--out {out} is a directory; give a file name such as {out}/x.tar.gz")
    if out.is_relative_to(data_dir):
        raise BackupError(
            f"--out {out} is inside the data directory {data_dir}; write the archive elsewhere "
            "(ideally to another disk or host)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".corral-backup-", dir=out.parent) as tmp:
        staging = Path(tmp)
        revision = 0
        store = data_dir / STORE_FILE_NAME
        if store.exists():
            try:
                revision = _snapshot_store(store, staging / STORE_FILE_NAME)
            except sqlite3.Error as exc:
                raise BackupError(f"cannot snapshot {store}: {exc}") from exc
        for path in _data_files(data_dir):
            copy = staging / path.relative_to(data_dir)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        files = tuple(
            BackupFile(
                path.relative_to(staging).as_posix(),
                path.stat().st_size,
                path.stat().st_mode & 0o7777,
                _sha256(path),
            )
            for path in sorted(p for p in staging.rglob("*") if p.is_file())
        )
        info = BackupInfo(out, __version__, _now().strftime("%Y-%m-%dT%H:%M:%SZ"), revision, files)
        _write_archive(info, staging, out)
    return info


def _write_archive(info: BackupInfo, staging: Path, out: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            manifest = json.dumps(info.manifest(), indent=2).encode() + b"\n"
            entry = tarfile.TarInfo(MANIFEST_NAME)
            entry.size, entry.mode, entry.mtime = len(manifest), 0o600, int(_now().timestamp())
            tar.addfile(entry, io.BytesIO(manifest))
            for item in info.files:
                tar.add(staging / item.path, arcname=DATA_PREFIX + item.path, recursive=False)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # it holds private keys
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_manifest(archive: Path) -> BackupInfo:
    """The manifest of `archive`, checked for shape (not yet for checksums)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MANIFEST_NAME)
            if member is None:
                raise KeyError(MANIFEST_NAME)
            data = json.loads(member.read())
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(
            f"{archive} is not a corral backup (no readable manifest: {exc})"
        ) from exc
    found = data.get("format") if isinstance(data, dict) else None
    if found != MANIFEST_FORMAT:
        raise BackupError(f"{archive}: manifest format {found!r} is not supported")
    try:
        files = tuple(
            BackupFile(f["path"], f["size"], f["mode"], f["sha256"]) for f in data["files"]
        )
        return BackupInfo(
            Path(archive), data["corralVersion"], data["created"], data["storeRevision"], files
        )
    except (KeyError, TypeError) as exc:
        raise BackupError(f"{archive}: manifest is missing {exc}") from exc


def _member_path(name: str) -> str | None:
    """The data-relative path of an archive member under `data/`, or None if it is unsafe."""
    if not name.startswith(DATA_PREFIX):
        return None
    relative = name[len(DATA_PREFIX) :]
    parts = relative.split("/")
    if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    return relative


def _extract_verified(archive: Path, info: BackupInfo, target: Path) -> None:
    """Extract `data/` into `target`, checking every file against the manifest."""
    expected = {f.path: f for f in info.files}
    seen: set[str] = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name == MANIFEST_NAME or member.isdir():
                continue
            relative = _member_path(member.name)
            if relative is None or not member.isfile() or relative not in expected:
                raise BackupError(
                    f"{archive}: unexpected entry {member.name!r}; the archive was altered or "
                    "is not a corral backup"
                )
            wanted = expected[relative]
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest = hashlib.sha256()
            source = tar.extractfile(member)
            assert source is not None
            with source, path.open("wb") as sink:
                while block := source.read(1 << 20):
                    digest.update(block)
                    sink.write(block)
            os.chmod(path, wanted.mode & 0o777)
            if digest.hexdigest() != wanted.sha256 or path.stat().st_size != wanted.size:
                raise BackupError(
                    f"{archive}: {relative} does not match its manifest checksum; "
                    "the archive is damaged, restore from another copy"
                )
            seen.add(relative)
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{archive}: files listed in the manifest are missing: {missing}")


def _check_store(staging: Path, info: BackupInfo) -> None:
    store = staging / STORE_FILE_NAME
    if not store.exists():
        return
    try:
        conn = sqlite3.connect(store)
        try:
            (status,) = conn.execute("PRAGMA integrity_check").fetchone()
            revision = read_revision(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{info.archive}: the store in the archive does not open: {exc}") from exc
    if status != "ok" or revision != info.store_revision:
        raise BackupError(
            f"{info.archive}: the store fails its check ({status}, revision {revision}, "
            f"manifest says {info.store_revision})"
        )


def _occupied(data_dir: Path) -> bool:
    """True when `data_dir` holds anything but a leftover lock file."""
    return data_dir.is_dir() and any(p.name != LOCK_FILE_NAME for p in data_dir.iterdir())


def _move_contents(source: Path, target: Path) -> None:
    """Move every entry of `source` into `target` (works when either is a mount point)."""
    for entry in sorted(source.iterdir()):
        shutil.move(str(entry), str(target / entry.name))


def restore(archive: Path, data_dir: Path, *, force: bool = False) -> BackupInfo:
    """Put the backup `archive` into `data_dir`. Refuses a data directory a running server holds,
    and a non-empty one unless `force` (its content then moves to
    `<data_dir>.before-restore-<time>`, reported as `moved_aside`). Every file is checked
    against the manifest, and the store must open, before anything in `data_dir` changes."""
    archive, data_dir = Path(archive).absolute(), Path(data_dir).absolute()
    if not archive.is_file():
        raise BackupError(f"backup archive {archive} does not exist; check --from")
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"--data-dir {data_dir} is a file, not a directory")
    info = read_manifest(archive)
    pid = is_locked(data_dir) if data_dir.is_dir() else None
    if pid is not None:
        raise BackupError(
            f"data directory {data_dir} is in use by a running corral server "
            f"(pid {pid or 'unknown'}); stop the server before restoring"
        )
    occupied = _occupied(data_dir)
    if occupied and not force:
        raise BackupError(
            f"data directory {data_dir} is not empty; restore into an empty directory, or add "
            f"--force to move its content to {data_dir.name}.before-restore-<time> first"
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
    try:
        _extract_verified(archive, info, staging)
        _check_store(staging, info)
        moved = _swap_in(staging, data_dir, occupied)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BackupInfo(
        archive, info.corral_version, info.created, info.store_revision, info.files, moved
    )


def _swap_in(staging: Path, data_dir: Path, occupied: bool) -> Path | None:
    """Move the old content aside (holding the data-dir lock) and the restored files in."""
    moved: Path | None = None
    data_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        lock = DataDirLock(data_dir).acquire()
    except DataDirLocked as exc:  # a server started while we extracted
        raise BackupError(f"{exc}; stop it before restoring") from None
    try:
        if occupied:
            stamp = _now().strftime("%Y%m%dT%H%M%SZ")
            moved = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
            moved.mkdir(mode=0o700)
            for entry in sorted(data_dir.iterdir()):
                if entry.name != LOCK_FILE_NAME:
                    shutil.move(str(entry), str(moved / entry.name))
        _move_contents(staging, data_dir)
    finally:
        lock.release()
    return moved
