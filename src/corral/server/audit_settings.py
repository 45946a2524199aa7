"""API audit log settings: `AUDIT_LEVEL` and `AUDIT_LOG_*` (the same names as Rancher's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_AUDIT_LOG_PATH = Path("/var/log/auditlog/corral-api-audit.log")
AUDIT_LOG_FILE_NAME = DEFAULT_AUDIT_LOG_PATH.name
DEFAULT_MAX_AGE_DAYS = 10
DEFAULT_MAX_BACKUPS = 10
DEFAULT_MAX_SIZE_MB = 100

LEVEL_OFF, LEVEL_METADATA, LEVEL_REQUEST_BODY, LEVEL_RESPONSE_BODY = 0, 1, 2, 3

# name in the environment -> (field, lowest, highest, what the value means)
_LIMITS: dict[str, tuple[str, int, int, str]] = {
    "AUDIT_LEVEL": (
        "level", 0, 3,
        "0 (off), 1 (metadata), 2 (+ request body) or 3 (+ response body)",
    ),
    "AUDIT_LOG_MAXAGE": ("max_age_days", 0, 36_500, "days to keep rotated files, 0 = no limit"),
    "AUDIT_LOG_MAXBACKUP": ("max_backups", 0, 10_000, "rotated files to keep, 0 = no limit"),
    "AUDIT_LOG_MAXSIZE": ("max_size_mb", 1, 1_048_576, "megabytes before the file rotates"),
}


def _range_error(name: str, value: object) -> ValueError:
    _, low, high, meaning = _LIMITS[name]
    return ValueError(f"{name}={value!r} is not valid: use a whole number {low}-{high}: {meaning}")


@dataclass(frozen=True)
class AuditSettings:
    """How the API audit log behaves; the defaults are Rancher's (level 0 = off)."""

    level: int = LEVEL_OFF
    path: Path = DEFAULT_AUDIT_LOG_PATH
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    max_backups: int = DEFAULT_MAX_BACKUPS
    max_size_mb: int = DEFAULT_MAX_SIZE_MB

    def __post_init__(self) -> None:
        for name, (field, low, high, _) in _LIMITS.items():
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _range_error(name, value)
        if not str(self.path):
            raise ValueError("AUDIT_LOG_PATH is empty: give a file path or a directory ending /")

    @property
    def enabled(self) -> bool:
        """True when anything is recorded (level >= 1)."""
        return self.level > LEVEL_OFF

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuditSettings:
        """Settings from `AUDIT_LEVEL`, `AUDIT_LOG_PATH`, `AUDIT_LOG_MAXAGE`, `AUDIT_LOG_MAXBACKUP`
        and `AUDIT_LOG_MAXSIZE`; unset or empty variables keep the defaults. A bad value raises
        ValueError naming the variable and the accepted range."""
        values: dict[str, object] = {}
        for name, (field, low, high, _) in _LIMITS.items():
            text = env.get(name, "").strip()
            if text:
                try:
                    number = int(text, 10)
                except ValueError:
                    raise _range_error(name, text) from None
                if not low <= number <= high:
                    raise _range_error(name, text)
                values[field] = number
        path_text = env.get("AUDIT_LOG_PATH", "").strip()
        if path_text:
            values["path"] = resolve_log_path(path_text)
        return cls(**values)  # type: ignore[arg-type]


def resolve_log_path(text: str) -> Path:
    """The log file for an `AUDIT_LOG_PATH` value: a value ending in `/` (Rancher's docs show
    `AUDIT_LOG_PATH=/my/custom/path/`) or naming an existing directory gets the default name."""
    path = Path(text)
    if text.endswith("/") or path.is_dir():
        return path / AUDIT_LOG_FILE_NAME
    return path
