"""The audit view's reading of the API audit log: the last records of the current file, newest
first, filtered by user, method and status.

The records are shown as the file holds them (already redacted when they were written: no
Cookie, Authorization or Set-Cookie header, secret-looking JSON values replaced); bodies longer
than BODY_PREVIEW_CHARS are cut for the page. Only the current file is read (not the rotated
backups), at most TAIL_BYTES from its end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAIL_BYTES = 8 * 1024 * 1024
BODY_PREVIEW_CHARS = 4096
BODY_FIELDS = ("requestBody", "responseBody")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the view asks for: user name (substring, any case), method, status (`404` or a
    class such as `4xx`), and how many records at most."""

    user: str = ""
    method: str = ""
    status: str = ""
    limit: int = DEFAULT_LIMIT


def parse_filter(query: dict[str, str]) -> AuditFilter | str:
    """The filter of a query string, or the message for a bad parameter (naming it and the fix)."""
    method = query.get("method", "").strip().upper()
    if method and method not in METHODS:
        return f"method {method!r} is not an HTTP method; use one of {', '.join(METHODS)}"
    status = query.get("status", "").strip().lower()
    if status and not (
        (status.isdigit() and len(status) == 3)
        or (len(status) == 3 and status[0].isdigit() and status[1:] == "xx")
    ):
        return f"status {status!r} must be a code such as 404 or a class such as 4xx"
    raw_limit = query.get("limit", "").strip() or str(DEFAULT_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return f"limit {raw_limit!r} must be a whole number from 1 to {MAX_LIMIT}"
    return AuditFilter(query.get("user", "").strip(), method, status, int(raw_limit))


def matches(record: dict[str, Any], wanted: AuditFilter) -> bool:
    """True when a record passes the filter."""
    user = record.get("user")
    name = str(user.get("name", "")) if isinstance(user, dict) else ""
    if wanted.user and wanted.user.lower() not in name.lower():
        return False
    if wanted.method and str(record.get("method", "")).upper() != wanted.method:
        return False
    if wanted.status:
        code = str(record.get("responseCode", ""))
        if wanted.status.endswith("xx"):
            return code[:1] == wanted.status[0]
        return code == wanted.status
    return True


def preview(record: dict[str, Any]) -> dict[str, Any]:
    """The record with long bodies cut to BODY_PREVIEW_CHARS (marked `<field>Preview: true`)."""
    shown = dict(record)
    for field in BODY_FIELDS:
        if field not in shown:
            continue
        value = shown[field]
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if len(text) > BODY_PREVIEW_CHARS:
            shown[field] = text[:BODY_PREVIEW_CHARS] + "…"
            shown[field + "Preview"] = True
    return shown


def tail_lines(path: Path, max_bytes: int = TAIL_BYTES) -> list[bytes]:
    """The complete lines among the last `max_bytes` of a file ([] when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read(size - start)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first one is probably cut
    return [line for line in lines if line.strip()]


def recent_records(path: Path, wanted: AuditFilter) -> list[dict[str, Any]]:
    """The newest records of the file that pass the filter, newest first (blocking I/O)."""
    found: list[dict[str, Any]] = []
    for line in reversed(tail_lines(path)):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a failed write
        if isinstance(record, dict) and matches(record, wanted):
            found.append(preview(record))
            if len(found) >= wanted.limit:
                break
    return found
