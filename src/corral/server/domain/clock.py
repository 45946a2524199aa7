"""Wall-clock time as the stored records write it: epoch milliseconds and RFC 3339 text."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return int(time.time() * 1000)


def iso_time(ms: int) -> str:
    """RFC 3339 UTC time (`2024-05-01T12:00:00Z`) of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
