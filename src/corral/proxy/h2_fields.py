"""HTTP/2 header blocks ↔ the proxy's HTTP/1.1 view of a message (pure functions on bytes).

Requests: pseudo-headers split off, `cookie` crumbs joined, the size counted as
SETTINGS_MAX_HEADER_LIST_SIZE counts it, the block checked against RFC 9113 §8.2-8.3 (what makes
a request *malformed*: a stream error), and what the proxy refuses itself named. The usual block
is checked with a few C-level operations on its names and values joined; one those find fault
with (or cannot judge) is checked field by field, which names the first field at fault.
Responses: `:status` first, lower-case names, hop-by-hop and other connection-specific fields
dropped.

The h2 library could do the checks (its `validate_inbound_headers`), but as a chain of
generators that walks every byte of every name and value in Python; `parse_request` does them
with C-level bytes operations.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corral.proxy import forwarding
from corral.proxy.errors import BAD_REQUEST, HEADERS_TOO_LARGE, NOT_IMPLEMENTED, ProxyStatus

Fields = list[tuple[bytes, bytes]]

# RFC 7541 §4.1: each header counts its name and value plus 32 bytes.
HPACK_ENTRY_OVERHEAD = 32
# Response fields that never go into an HTTP/2 message, beyond the hop-by-hop ones.
_NOT_IN_H2_RESPONSE = frozenset({b"sec-websocket-accept"})
_DROPPED_FROM_RESPONSE = forwarding.HOP_BY_HOP | _NOT_IN_H2_RESPONSE
# Connection values that name no field beyond the hop-by-hop ones: no token list is built.
_PLAIN_CONNECTION_VALUES = frozenset({b"keep-alive", b"close", b"upgrade"})
_NOT_IN_TRAILERS = frozenset({b"content-length", b"host", b"content-type"})
# RFC 9113 §8.2.2: fields that are connection-specific in HTTP/1.1 and malformed in HTTP/2.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
_METHOD, _SCHEME, _AUTHORITY, _PATH, _PROTOCOL = 1, 2, 4, 8, 16
_PSEUDO_BITS = {
    b":method": _METHOD,
    b":scheme": _SCHEME,
    b":authority": _AUTHORITY,
    b":path": _PATH,
    b":protocol": _PROTOCOL,
}
# Regular request fields parse_request looks at beyond cookie.
_SPECIAL_REQUEST_FIELDS = _CONNECTION_SPECIFIC | {b"te", b"host"}
# §8.2.1: a name is 0x21-0x7e without upper case (and without ':' beyond a pseudo's first).
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A)
_NAME_BYTES_LF = _NAME_BYTES + b"\n"
_WHITESPACE = (b" ", b"\t")


@dataclass(slots=True)
class H2Request:
    """A request as received in an HTTP/2 header block."""

    method: bytes = b""
    path: bytes = b""
    authority: bytes | None = None
    protocol: bytes | None = None  # RFC 8441 `:protocol`
    fields: Fields | None = None  # regular fields; cookies joined into one
    list_size: int = 0  # as SETTINGS_MAX_HEADER_LIST_SIZE counts it
    malformed: str | None = None  # why the block breaks RFC 9113 (then: RST_STREAM)


def parse_request(headers: Iterable[tuple[bytes, bytes]]) -> H2Request:
    """Split pseudo-headers from fields, join `cookie` crumbs with "; " (RFC 9113 §8.2.3), and
    note the first rule of §8.2-8.3 the block breaks in `malformed` (values never quoted: they
    may carry credentials)."""
    block = headers if isinstance(headers, list) else list(headers)
    request = _parse_plain(block)
    return request if request is not None else _parse_checked(block)


def _parse_plain(block: Fields) -> H2Request | None:
    """`parse_request` for the usual block: request pseudo-headers, each once, then regular
    fields (cookies perhaps) that break no character rule and need no further look (no host,
    te or connection-specific field). The checks are a few C-level operations on the names
    and the values joined by LF (a byte neither may contain). None for any other block:
    `_parse_checked` then finds (and names) what is wrong with it, if anything."""
    request = H2Request()
    seen = 0
    count = 0
    pseudo_bytes = 0  # the pseudo-headers' names (the values are counted joined below)
    for name, value in block:
        bit = _PSEUDO_BITS.get(name)
        if bit is None:
            break
        if bit & seen:
            return None
        seen |= bit
        pseudo_bytes += len(name)
        if bit == _METHOD:
            request.method = value
        elif bit == _PATH:
            request.path = value
        elif bit == _AUTHORITY:
            request.authority = value
        elif bit == _PROTOCOL:
            request.protocol = value
        count += 1
    fields = block[count:]
    names = [name for name, _ in fields]
    if not (all(names) and _SPECIAL_REQUEST_FIELDS.isdisjoint(names)):
        return None
    joined = b"\n".join(names)
    separators = len(names) - 1 if names else 0
    if joined.translate(None, _NAME_BYTES_LF) or joined.count(b"\n") != separators:
        return None  # upper case, a ':' (a pseudo-header after a field), space, control...
    values = b"\n".join([value for _, value in block])
    if (
        values.count(b"\n") != len(block) - 1
        or b"\r" in values
        or b"\0" in values
        or values[:1] in _WHITESPACE
        or values[-1:] in _WHITESPACE
        or b" \n" in values
        or b"\t\n" in values
        or b"\n " in values
        or b"\n\t" in values
    ):
        return None
    if b"cookie" in names:
        crumbs = [value for name, value in fields if name == b"cookie"]
        fields = [field for field in fields if field[0] != b"cookie"]
        fields.append((b"cookie", b"; ".join(crumbs)))
    request.fields = fields
    field_bytes = pseudo_bytes + len(joined) - separators + len(values) - (len(block) - 1)
    request.list_size = field_bytes + HPACK_ENTRY_OVERHEAD * len(block)
    request.malformed = _pseudo_problem(request, seen, None)
    return request


def _parse_checked(headers: Fields) -> H2Request:
    """`parse_request` with every field's characters checked in order (a block that breaks
    the character rules: the first field at fault is named)."""
    request = H2Request()
    fields: Fields = []
    cookies: list[bytes] = []
    size = 0
    problem: str | None = None
    pseudo: set[bytes] = set()
    regular_seen = False
    host: bytes | None = None
    for name, value in headers:
        size += len(name) + len(value) + HPACK_ENTRY_OVERHEAD
        if problem is None:
            problem = _field_problem(name, value)
        if name[:1] == b":":
            if problem is None:
                if name in pseudo:
                    problem = f"repeated pseudo-header {name!r}"
                elif regular_seen:
                    problem = f"pseudo-header {name!r} after a regular field"
                elif name not in _REQUEST_PSEUDO:
                    problem = f"pseudo-header {name!r} is not one of a request"
            pseudo.add(name)
            if name == b":method":
                request.method = value
            elif name == b":path":
                request.path = value
            elif name == b":authority":
                request.authority = value
            elif name == b":protocol":
                request.protocol = value
            continue
        regular_seen = True
        if name == b"cookie":
            cookies.append(value)
            continue
        if problem is None:
            if name in _CONNECTION_SPECIFIC:
                problem = f"connection-specific field {name!r}"
            elif name == b"te" and value.lower() != b"trailers":
                problem = "TE other than trailers"
            elif name == b"host":
                if host is not None:
                    problem = "more than one host field"
                host = value
        fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    request.fields = fields
    request.list_size = size
    request.malformed = problem or _pseudo_problem(
        request, sum(_PSEUDO_BITS.get(name, 0) for name in pseudo), host
    )
    return request


def _field_problem(name: bytes, value: bytes) -> str | None:
    """What is wrong with one field's characters (RFC 9113 §8.2.1), or None."""
    body = name[1:] if name[:1] == b":" else name
    if not body:
        return "an empty field name"
    if body.translate(None, _NAME_BYTES):
        return f"field name {name!r} has upper-case or other characters not allowed"
    if value:
        if b"\r" in value or b"\n" in value or b"\0" in value:
            return f"field {name!r} has CR, LF or NUL in its value"
        if value[:1] in _WHITESPACE or value[-1:] in _WHITESPACE:
            return f"field {name!r} has a value with surrounding whitespace"
    return None


def _pseudo_problem(request: H2Request, seen: int, host: bytes | None) -> str | None:
    """The request pseudo-headers RFC 9113 §8.3 requires (`seen`: their bits), and
    :authority against host."""
    if not seen & _METHOD:
        return "no :method"
    connect = request.method == b"CONNECT"
    if connect and request.protocol is None:
        if seen & (_SCHEME | _PATH):
            return "CONNECT with :scheme or :path"
    elif seen & (_SCHEME | _PATH) != _SCHEME | _PATH:
        return "no :scheme or no :path"
    if request.protocol is not None and not connect:
        return ":protocol on a request that is not CONNECT"
    if seen & _PATH and not request.path:
        return "an empty :path"
    if request.authority is None and host is None:
        return "neither :authority nor host"
    if request.authority is not None and host is not None and request.authority != host:
        return ":authority and host differ"
    return None


def request_problem(request: H2Request, max_list_size: int) -> ProxyStatus | None:
    """Why the proxy answers this request itself, or None to forward it."""
    if request.list_size > max_list_size:
        return HEADERS_TOO_LARGE.because("the request header list is too large")
    if request.method == b"CONNECT":
        if request.protocol is None:
            return NOT_IMPLEMENTED.because("CONNECT is not supported")
        if request.protocol.lower() != b"websocket":
            return NOT_IMPLEMENTED.because("extended CONNECT supports :protocol websocket only")
    if request.path[:1] != b"/" and not (request.path == b"*" and request.method == b"OPTIONS"):
        return BAD_REQUEST.because("invalid :path")
    return None


def websocket_fields(fields: Fields) -> Fields:
    """The fields of an extended CONNECT plus a `Sec-WebSocket-Key` for the HTTP/1.1 upgrade
    (RFC 8441 has none; the upstream needs one and the proxy checks nothing it answers)."""
    if any(name == b"sec-websocket-key" for name, _ in fields):
        return fields
    key = base64.b64encode(os.urandom(16))
    return [*fields, (b"sec-websocket-key", key)]


def has_field(fields: Fields, name: bytes) -> bool:
    """Whether a field named `name` (lower-case) is present."""
    return any(n == name for n, _ in fields)


def response_fields(status: int, headers: Sequence[tuple[bytes, bytes]]) -> Fields:
    """The upstream's response head as HTTP/2 fields: `:status` first, lower-case names,
    hop-by-hop fields (and those `Connection` names) dropped."""
    fields: Fields = [(b":status", b"%d" % status)]
    named = False  # a Connection header names fields beyond the hop-by-hop ones
    for name, value in headers:
        lower = name.lower()
        if lower in _DROPPED_FROM_RESPONSE:
            if lower == b"connection" and value.lower() not in _PLAIN_CONNECTION_VALUES:
                named = True
            continue
        fields.append((lower, value))
    if named:
        tokens = forwarding.connection_tokens(headers)
        fields = [field for field in fields if field[0] not in tokens]
    return fields


def fields_size(fields: Fields) -> int:
    """The bytes of `fields` as the access log counts them: name, value and 4 per field."""
    return sum([len(name) + len(value) for name, value in fields]) + 4 * len(fields)


def trailer_fields(trailers: Sequence[tuple[bytes, bytes]]) -> Fields:
    """Upstream chunked trailers as HTTP/2 trailing fields (framing and routing ones dropped)."""
    fields: Fields = []
    for name, value in trailers:
        lower = name.lower()
        if lower in forwarding.HOP_BY_HOP or lower in _NOT_IN_TRAILERS:
            continue
        fields.append((lower, value))
    return fields


def local_fields(status: int, headers: Sequence[tuple[bytes, bytes]], length: int) -> Fields:
    """The fields of a response the proxy makes itself."""
    fields: Fields = [(b":status", b"%d" % status)]
    fields += [(name.lower(), value) for name, value in headers]
    fields.append((b"content-length", b"%d" % length))
    return fields
