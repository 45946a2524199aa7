"""Audit record values and their rendering to one JSON line.

The middleware fills a record with cheap placeholders (`Timestamp`, `RawHeaders`, `RawBody`)
while the request runs; `render_line()` turns them into the logged form once the response has
gone: RFC 3339 times, redacted headers, redacted bodies. A JSON body that cannot hold a secret
key is validated and spliced in as it came, instead of being decoded and encoded again.

The line is what `json.JSONEncoder(separators=(",", ":"))` writes (ASCII only: other
characters as `\\u` escapes). The middleware's own records skip the encoder: `json_string()`,
`format_timestamp()` and `RawHeaders.render_json()` write the same text directly (see
`corral.server.audit`).
"""

from __future__ import annotations

import json
import json.encoder
from datetime import UTC, datetime
from typing import Any, Protocol

from corral.server.audit_redact import (
    logged_header_name,
    may_hold_secret_keys,
    redact_body,
    redact_headers,
)

#: `text` as a JSON string, exactly as the encoder writes it (the json module's own C escaper).
json_string = json.encoder.encode_basestring_ascii

_cached_second: tuple[int, str] = (-1, "")  # (whole second, its formatted prefix)


def format_timestamp(seconds: float) -> str:
    """A time.time() value as RFC 3339 UTC with microseconds: `2024-05-01T10:00:00.123456Z`."""
    global _cached_second
    whole = int(seconds)
    micros = round((seconds - whole) * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, 0
    cached, prefix = _cached_second
    if whole != cached:
        prefix = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cached_second = (whole, prefix)
    return f"{prefix}.{micros:06d}Z"


class LineSource(Protocol):
    """A record that renders itself to its JSON line (the middleware's exchanges)."""

    def render_line(self) -> bytes:
        """The record as one JSON line ending in newline."""
        ...


class Timestamp:
    """A time.time() value, rendered as RFC 3339 UTC with microseconds."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def render(self) -> str:
        """See format_timestamp."""
        return format_timestamp(self.seconds)


# Raw header name -> `"Logged-Name":[` (its logged name as JSON text, the list opened), or ""
# when the header is dropped.
_HEADER_NAMES: dict[bytes, str] = {}
_HEADER_NAMES_MAX = 1024  # cleared when full: names are client-chosen


def _header_name_json(name: bytes) -> str:
    logged = logged_header_name(name.decode("latin-1"))
    text = "" if logged is None else json_string(logged) + ":["
    if len(_HEADER_NAMES) >= _HEADER_NAMES_MAX:
        _HEADER_NAMES.clear()
    _HEADER_NAMES[name] = text
    return text


class RawHeaders:
    """ASGI header pairs, redacted when rendered."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.pairs = pairs

    def render(self) -> dict[str, list[str]]:
        """The logged headers: {Canonical-Name: [values]}, credentials dropped."""
        return redact_headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.pairs)

    def render_json(self) -> str:
        """`render()` as the encoder writes it, without building the dict for the encoder."""
        groups: dict[str, list[str]] = {}
        names = _HEADER_NAMES
        for name, value in self.pairs:
            key = names.get(name)
            if key is None:
                key = _header_name_json(name)
            if key:
                values = groups.get(key)
                if values is None:
                    groups[key] = [json_string(value.decode("latin-1"))]
                else:
                    values.append(json_string(value.decode("latin-1")))
        return "{" + ",".join([key + ",".join(v) + "]" for key, v in groups.items()]) + "}"

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
        if self.truncated or "json" not in content_type:
            return False
        if self.from_server and _recently_spliced.get(len(body)) == body:
            return True  # the same bytes passed the checks below a moment ago
        if b"\n" in body or b"\r" in body or may_hold_secret_keys(body):
            return False  # (JSON may hold raw line breaks between tokens; a line may not)
        if self.from_server:
            text = body.strip(b" \t")
            if text[:1] + text[-1:] not in (b"{}", b"[]"):
                return False
            _remember_spliced(body)
            return True
        try:
            json.loads(body)
        except ValueError:
            return False
        return True


# Response bodies that passed RawBody._splicable lately, by length (a newer one replaces an
# older one of the same length). API clients poll: the same resource gives the same bytes, and
# comparing them with a remembered body costs a memcmp instead of the scan for secret keys.
# Only bodies that hold no secret-looking key are kept, and only a few small ones.
_recently_spliced: dict[int, bytes] = {}
RECENTLY_SPLICED_BODIES = 32
RECENTLY_SPLICED_MAX_BYTES = 64 * 1024


def _remember_spliced(body: bytes) -> None:
    if len(body) > RECENTLY_SPLICED_MAX_BYTES:
        return
    if len(body) not in _recently_spliced and len(_recently_spliced) >= RECENTLY_SPLICED_BODIES:
        del _recently_spliced[next(iter(_recently_spliced))]  # the oldest length
    _recently_spliced[len(body)] = body


def _plain(value: object) -> Any:
    if isinstance(value, Timestamp | RawHeaders | RawBody):
        return value.render()
    raise TypeError(f"audit record value of type {type(value).__name__} is not JSON")


# Built once: json.dumps(default=...) would build a new encoder for every record.
_ENCODER = json.JSONEncoder(default=_plain, separators=(",", ":"))


def render_value(value: object) -> str:
    """One value as the record's encoder writes it (placeholders rendered)."""
    return _ENCODER.encode(value)


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
