"""What a parsed HTTP/1.1 request head means for the proxy (pure: bytes in, facts out).

The checks that keep requests from being smuggled through the proxy live here: one Host,
`Transfer-Encoding` only `chunked`, a request target the upstream will read the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import httptools

from corral.proxy.errors import BAD_REQUEST, NOT_IMPLEMENTED, RequestRejected


def read_request_head(
    method: bytes, url: bytes, headers: Sequence[tuple[bytes, bytes]], *, http10: bool
) -> tuple[bytes, bytes | None, bool, bool]:
    """(target in origin form, Host or None, chunked, has a body); RequestRejected if unusable."""
    if method == b"CONNECT":  # llhttp would take the rest of the connection for a tunnel
        raise RequestRejected(NOT_IMPLEMENTED, "CONNECT is not supported")
    host: bytes | None = None
    transfer_encoding: bytes | None = None
    has_body = False
    for name, value in headers:
        if len(name) not in (4, 14, 17):  # host, content-length, transfer-encoding
            continue
        lower = name.lower()
        if lower == b"host":
            if host is not None:
                raise RequestRejected(BAD_REQUEST, "more than one Host header")
            host = value
        elif lower == b"content-length":
            has_body = value.strip() != b"0"
        elif lower == b"transfer-encoding":
            transfer_encoding = value
    target = url
    if target[:1] != b"/":
        target, host = absolute_form(method, target, host)
    if host is None and not http10:
        raise RequestRejected(BAD_REQUEST, "HTTP/1.1 request without a Host header")
    chunked = False
    if transfer_encoding is not None:
        if transfer_encoding.strip().lower() != b"chunked":
            raise RequestRejected(NOT_IMPLEMENTED, "only Transfer-Encoding: chunked is supported")
        chunked = has_body = True
    return target, host, chunked, has_body


def absolute_form(method: bytes, target: bytes, host: bytes | None) -> tuple[bytes, bytes | None]:
    """`GET http://h/p` → ("/p", "h"); `OPTIONS *` passes; anything else is a bad target."""
    if target == b"*" and method == b"OPTIONS":
        return target, host
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError as exc:
            raise RequestRejected(BAD_REQUEST, "invalid request target") from exc
        path = url.path or b"/"
        if url.query:
            path += b"?" + url.query
        authority = url.host + (b":%d" % url.port if url.port else b"")
        return path, authority
    raise RequestRejected(BAD_REQUEST, "invalid request target")
