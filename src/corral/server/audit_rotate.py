"""Size-based rotation of the audit file, the way lumberjack (Rancher's log roller) does it.

`corral-api-audit.log` rotates to `corral-api-audit-2024-05-01T10-00-00.000.log` (UTC time of the
rotation); rotated files beyond `max_backups` (newest kept) or older than `max_age_days` are
removed. Zero means "no limit" for both, as in lumberjack.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

BACKUP_TIME_FORMAT = "%Y-%m-%dT%H-%M-%S.%f"  # trimmed to milliseconds


@dataclass(frozen=True)
class Backup:
    """A rotated file and the time in its name."""

    path: Path
    rotated_at: datetime


def backup_name(active: Path, when: datetime) -> Path:
    """`dir/name-<UTC time>.ext` for the active file `dir/name.ext`."""
    stamp = when.astimezone(UTC).strftime(BACKUP_TIME_FORMAT)[:-3]
    return active.with_name(f"{active.stem}-{stamp}{active.suffix}")


def parse_backup(active: Path, candidate: Path) -> Backup | None:
    """The Backup for `candidate` if it is a rotated file of `active`, else None."""
    prefix, suffix = active.stem + "-", active.suffix
    name = candidate.name
    if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix):
        return None
    stamp = name[len(prefix) : len(name) - len(suffix)] if suffix else name[len(prefix) :]
    try:
        when = datetime.strptime(stamp + "000", BACKUP_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return Backup(candidate, when)


def list_backups(active: Path) -> list[Backup]:
    """Rotated files of `active`, newest first."""
    try:
        entries = list(active.parent.iterdir())
    except OSError:
        return []
    found = [b for b in (parse_backup(active, entry) for entry in entries) if b is not None]
    return sorted(found, key=lambda b: b.rotated_at, reverse=True)


def expired_backups(
    backups: list[Backup], *, max_backups: int, max_age_days: int, now: datetime
) -> list[Backup]:
    """Which of `backups` (newest first) the retention rules remove."""
    doomed: list[Backup] = []
    cutoff = now - timedelta(days=max_age_days) if max_age_days > 0 else None
    for index, backup in enumerate(backups):
        too_many = max_backups > 0 and index >= max_backups
        too_old = cutoff is not None and backup.rotated_at < cutoff
        if too_many or too_old:
            doomed.append(backup)
    return doomed


def rotate(
    active: Path, *, max_backups: int, max_age_days: int, after: datetime | None = None
) -> Backup:
    """Rename `active` to a fresh backup name (later than `after`, the previous rotation, so
    names keep rotation order) and apply retention. The caller reopens `active` afterwards."""
    when = datetime.now(UTC)
    if after is not None and when <= after:
        when = after + timedelta(milliseconds=1)
    target = backup_name(active, when)
    while target.exists():  # two rotations within one millisecond
        when += timedelta(milliseconds=1)
        target = backup_name(active, when)
    os.rename(active, target)
    prune(active, max_backups=max_backups, max_age_days=max_age_days)
    return Backup(target, when)


def prune(active: Path, *, max_backups: int, max_age_days: int) -> int:
    """Remove rotated files the retention rules no longer keep; returns how many went."""
    now = datetime.fromtimestamp(time.time(), UTC)
    doomed = expired_backups(
        list_backups(active), max_backups=max_backups, max_age_days=max_age_days, now=now
    )
    for backup in doomed:
        with contextlib.suppress(FileNotFoundError):
            backup.path.unlink()
    return len(doomed)
