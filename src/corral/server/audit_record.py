"""Audit record values and their rendering to one JSON line.

The middleware fills a record with cheap placeholders (`Timestamp`, `RawHeaders`, `RawBody`)
while the request runs; `render_line()` turns them into the logged form once the response has
gone: RFC 3339 times, redacted headers, redacted bodies. A JSON body that cannot hold a secret
key is validated and spliced in as it came, instead of being decoded and encoded again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from corral.server.audit_redact import may_hold_secret_keys, redact_body, redact_headers


class Timestamp:
    """A time.time() value, rendered as RFC 3339 UTC with microseconds."""

    __slots__ = ("seconds",)
    _cached: tuple[int, str] = (-1, "")  # (whole second, its formatted prefix)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def render(self) -> str:
        whole = int(self.seconds)
        micros = round((self.seconds - whole) * 1_000_000)
        if micros >= 1_000_000:
            whole, micros = whole + 1, 0
        cached_second, prefix = Timestamp._cached
        if whole != cached_second:
            prefix = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            Timestamp._cached = (whole, prefix)
        return f"{prefix}.{micros:06d}Z"


class RawHeaders:
    """ASGI header pairs, redacted when rendered."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.pairs = pairs

    def render(self) -> dict[str, list[str]]:
        return redact_headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.pairs)

    def content_type(self) -> str:
        for name, value in self.pairs:
            if name.lower() == b"content-type":
                return value.decode("latin-1")
        return ""


class RawBody:
    """Body chunks as they passed through (the first `limit` bytes), redacted when rendered.

    `from_server` marks a response body: the server's own JSON encoder wrote it, so a complete
    one that looks like a JSON document is spliced in without being parsed again. A client's
    request body is always parsed before it is spliced."""

    __slots__ = ("chunks", "from_server", "headers", "size", "truncated")

    def __init__(self, headers: RawHeaders, *, from_server: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.headers = headers
        self.from_server = from_server
        self.size = 0
        self.truncated = False

    def add(self, chunk: bytes, limit: int) -> None:
        room = limit - self.size
        if room <= 0:
            self.truncated = self.truncated or bool(chunk)
            return
        if len(chunk) > room:
            chunk, self.truncated = chunk[:room], True
        self.chunks.append(chunk)
        self.size += len(chunk)

    def render(self) -> Any:
        """The body as a JSON value (see audit_redact.redact_body)."""
        return redact_body(b"".join(self.chunks), self.headers.content_type())

    def render_json(self) -> bytes:
        """The body as JSON text for the line: as it came when that is safe, else rendered."""
        body = b"".join(self.chunks)
        content_type = self.headers.content_type()
        if self._splicable(body, content_type):
            return body
        return json.dumps(redact_body(body, content_type)).encode()

    def _splicable(self, body: bytes, content_type: str) -> bool:
        if (
            self.truncated
            or "json" not in content_type
            or b"\n" in body  # JSON may hold raw line breaks between tokens; a line may not
            or b"\r" in body
            or may_hold_secret_keys(body)
        ):
            return False
        if self.from_server:
            text = body.strip(b" \t")
            return text[:1] + text[-1:] in (b"{}", b"[]")
        try:
            json.loads(body)
        except ValueError:
            return False
        return True


def _plain(value: object) -> Any:
    if isinstance(value, Timestamp | RawHeaders | RawBody):
        return value.render()
    raise TypeError(f"audit record value of type {type(value).__name__} is not JSON")


# Built once: json.dumps(default=...) would build a new encoder for every record.
_ENCODER = json.JSONEncoder(default=_plain, separators=(",", ":"))


def render_line(record: dict[str, Any]) -> bytes:
    """One record as a JSON line ending in newline, placeholders rendered; bodies go last."""
    bodies = [(key, value) for key, value in record.items() if isinstance(value, RawBody)]
    if bodies:
        record = {k: v for k, v in record.items() if not isinstance(v, RawBody)}
    line = _ENCODER.encode(record).encode()
    if not bodies:
        return line + b"\n"
    parts = [line[:-1]]
    for index, (key, body) in enumerate(bodies):
        separator = b"," if index or len(line) > 2 else b""
        parts.append(separator + json.dumps(key).encode() + b":" + body.render_json())
    parts.append(b"}\n")
    return b"".join(parts)
