"""HTTP/2 header blocks ↔ the proxy's HTTP/1.1 view of a message (pure functions on bytes).

Requests: pseudo-headers split off, `cookie` crumbs joined, the size counted as
SETTINGS_MAX_HEADER_LIST_SIZE counts it, and what the proxy refuses itself named. Responses:
`:status` first, lower-case names, hop-by-hop and other connection-specific fields dropped.
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
_NOT_IN_TRAILERS = frozenset({b"content-length", b"host", b"content-type"})


@dataclass(slots=True)
class H2Request:
    """A request as received in an HTTP/2 header block."""

    method: bytes = b""
    path: bytes = b""
    authority: bytes | None = None
    protocol: bytes | None = None  # RFC 8441 `:protocol`
    fields: Fields | None = None  # regular fields; cookies joined into one
    list_size: int = 0  # as SETTINGS_MAX_HEADER_LIST_SIZE counts it


def parse_request(headers: Iterable[tuple[bytes, bytes]]) -> H2Request:
    """Split pseudo-headers from fields; join `cookie` crumbs with "; " (RFC 9113 §8.2.3).

    The h2 library has already checked the block (pseudo-headers first and once, lower-case
    names, no connection-specific fields)."""
    request = H2Request()
    fields: Fields = []
    cookies: list[bytes] = []
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + HPACK_ENTRY_OVERHEAD
        if name[:1] == b":":
            if name == b":method":
                request.method = value
            elif name == b":path":
                request.path = value
            elif name == b":authority":
                request.authority = value
            elif name == b":protocol":
                request.protocol = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    request.fields = fields
    request.list_size = size
    return request


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
    named = forwarding.connection_tokens(headers)
    fields: Fields = [(b":status", b"%d" % status)]
    for name, value in headers:
        lower = name.lower()
        if lower in forwarding.HOP_BY_HOP or lower in named or lower in _NOT_IN_H2_RESPONSE:
            continue
        fields.append((lower, value))
    return fields


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
