"""Header policy between client and upstream, as pure functions on bytes.

Rancher's example NGINX configuration is the specification: `Host` as received, `X-Forwarded-Proto`
= the client's scheme, `X-Forwarded-Port` = the port the client used, `X-Forwarded-For` = incoming
value + client address, HTTP/1.1 upstream with the `Upgrade`/`Connection` pair mapped. Hop-by-hop
headers never cross the proxy in either direction.

Behind another proxy (`trusted_proxies`): a connection from one of its addresses keeps the
`X-Forwarded-Proto` and `-Port` that proxy set (`trusted_forwarded_lines`); the decision is made
once per connection (`TrustedProxies.trusts`), so the per-request path is the same either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

Headers = Sequence[tuple[bytes, bytes]]

# Headers that describe one connection, not the message (RFC 9110 §7.6.1), lower-case.
HOP_BY_HOP: Final[frozenset[bytes]] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Request headers the proxy sets itself (whatever the client sent is replaced).
_REPLACED_ON_REQUEST: Final = frozenset({b"x-forwarded-proto", b"x-forwarded-port", b"host"})

# Connection tokens that name no end-to-end header.
_CONNECTION_OPTIONS: Final = HOP_BY_HOP | {b"close"}
# Whole Connection values that name nothing to remove (the usual ones): no token list is built.
_PLAIN_CONNECTION_VALUES: Final = frozenset({b"keep-alive", b"close", b"upgrade"})

IDEMPOTENT_METHODS: Final[frozenset[bytes]] = frozenset(
    {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"}
)


# Lengths of every header name the policy looks at: other names skip the lower-casing.
_WATCHED_LENGTHS: Final = frozenset(
    len(n)
    for n in (
        *HOP_BY_HOP,
        *_REPLACED_ON_REQUEST,
        b"x-forwarded-for",
        b"content-length",
    )
)


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Lower-case tokens of every `Connection` header (they name more hop-by-hop headers)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def forwarded_constants(scheme: str, port: int) -> bytes:
    """The per-listener header lines that never change: X-Forwarded-Proto and -Port."""
    return b"X-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\n" % (scheme.encode(), port)


class TrustedProxies:
    """The proxy addresses (`trusted_proxies` CIDRs) whose X-Forwarded-* headers are kept."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: Sequence[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(cidr.strip()) for cidr in cidrs)

    def trusts(self, address: str) -> bool:
        """Whether a peer address (as the socket reports it) is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)


def trusted_forwarded_lines(headers: Headers, scheme: str, port: int) -> bytes:
    """The X-Forwarded-Proto and -Port lines for a request from a trusted proxy: the first
    non-empty value it sent of each, the listener's own (`forwarded_constants`) where it sent none.
    Goes into `build_upstream_head` as `listener_lines` (which drops the received copies)."""
    proto: bytes | None = None
    forwarded_port: bytes | None = None
    for name, value in headers:
        size = len(name)
        if size == 17 and proto is None and name.lower() == b"x-forwarded-proto":
            proto = value.strip() or None
        elif size == 16 and forwarded_port is None and name.lower() == b"x-forwarded-port":
            forwarded_port = value.strip() or None
    return b"X-Forwarded-Proto: %s\r\nX-Forwarded-Port: %s\r\n" % (
        proto if proto is not None else scheme.encode(),
        forwarded_port if forwarded_port is not None else b"%d" % port,
    )


def requested_upgrade(headers: Headers, *, pass_h2c: bool) -> bytes | None:
    """The `Upgrade` value to forward for a request that asks to switch protocols, or None when
    there is nothing left to forward. `h2c` is dropped unless `pass_h2c`: an upstream that
    switched to cleartext HTTP/2 would take requests past every rule of the proxy (h2c
    smuggling), so the request is served as an ordinary HTTP/1.1 request instead."""
    value = next((v for n, v in headers if len(n) == 7 and n.lower() == b"upgrade"), None)
    if value is None or pass_h2c:
        return value
    tokens = [t.strip() for t in value.split(b",")]
    kept = [t for t in tokens if t and t.lower() != b"h2c"]
    if len(kept) == len(tokens):
        return value
    return b", ".join(kept) or None


def build_upstream_head(
    method: bytes,
    target: bytes,
    headers: Headers,
    *,
    host: bytes,
    client_ip: bytes,
    listener_lines: bytes,
    upgrade: bytes | None,
    chunked: bool,
) -> bytes:
    """The HTTP/1.1 request head sent upstream.

    `host` is the Host to send (as received, or the server name when the client sent none);
    `listener_lines` comes from `forwarded_constants`; `upgrade` is the client's Upgrade value
    when the request asks to switch protocols; `chunked` re-frames a chunked body.
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    extend = parts.extend
    forwarded_for = b""
    named: frozenset[bytes] | None = None
    for name, value in headers:
        if len(name) in _WATCHED_LENGTHS:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                if (
                    lower == b"connection"
                    and named is None
                    and value.lower() not in _PLAIN_CONNECTION_VALUES
                ):
                    named = connection_tokens(headers)
                continue
            if lower in _REPLACED_ON_REQUEST:
                continue
            if lower == b"x-forwarded-for":
                forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
                continue
        extend((name, b": ", value, b"\r\n"))
    if named is not None:
        kept = _without_named(headers, named)
        if kept is not None:  # the client's Connection header names more hop-by-hop headers
            return build_upstream_head(
                method,
                target,
                kept,
                host=host,
                client_ip=client_ip,
                listener_lines=listener_lines,
                upgrade=upgrade,
                chunked=chunked,
            )
    return _finish_upstream_head(parts, forwarded_for, client_ip, listener_lines, upgrade, chunked)


def _without_named(headers: Headers, named: frozenset[bytes]) -> list[tuple[bytes, bytes]] | None:
    """`headers` less those a Connection header names (hop-by-hop ones stay: the caller drops
    them anyway and may need their values); None when nothing would be removed."""
    if named <= _CONNECTION_OPTIONS:  # the usual `keep-alive`, `close`, `upgrade`
        return None
    if not any(n.lower() in named and n.lower() not in HOP_BY_HOP for n, _ in headers):
        return None
    return [(n, v) for n, v in headers if n.lower() not in named or n.lower() in HOP_BY_HOP]


def _finish_upstream_head(
    parts: list[bytes],
    forwarded_for: bytes,
    client_ip: bytes,
    listener_lines: bytes,
    upgrade: bytes | None,
    chunked: bool,
) -> bytes:
    parts.append(listener_lines)
    if forwarded_for:
        parts += (b"X-Forwarded-For: ", forwarded_for, b", ", client_ip, b"\r\n")
    else:
        parts += (b"X-Forwarded-For: ", client_ip, b"\r\n")
    if upgrade is not None:
        parts += (b"Upgrade: ", upgrade, b"\r\nConnection: upgrade\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


# Response framing decided from the upstream's head.
FRAMING_NONE: Final = 0  # no body (HEAD, 204, 304, 1xx)
FRAMING_LENGTH: Final = 1  # Content-Length passed through
FRAMING_CHUNKED: Final = 2  # re-chunked to the client
FRAMING_CLOSE: Final = 3  # body runs to the connection's end (HTTP/1.0 client, or no framing)

_STATUS_LINES: Final[dict[tuple[int, bytes], bytes]] = {}


def _status_line(status: int, reason: bytes) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[(status, reason)] = line
    return line


def build_response_head(
    status: int,
    reason: bytes,
    headers: Headers,
    *,
    framing: int,
    close: bool,
    client_http10: bool,
    upgrade: bool = False,
) -> bytes:
    """The response head sent to the client: hop-by-hop headers dropped, framing and
    `Connection` rewritten for the client's connection (never the upstream's)."""
    parts = [_status_line(status, reason)]
    extend = parts.extend
    upgrade_value = b""
    drop_length = framing in (FRAMING_CHUNKED, FRAMING_CLOSE)
    named: frozenset[bytes] | None = None
    for name, value in headers:
        if len(name) in _WATCHED_LENGTHS:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                if lower == b"upgrade":
                    upgrade_value = value
                elif (
                    lower == b"connection"
                    and named is None
                    and value.lower() not in _PLAIN_CONNECTION_VALUES
                ):
                    named = connection_tokens(headers)
                continue
            if drop_length and lower == b"content-length":
                continue
        extend((name, b": ", value, b"\r\n"))
    kept = _without_named(headers, named) if named is not None else None
    if kept is not None:
        return build_response_head(
            status,
            reason,
            kept,
            framing=framing,
            close=close,
            client_http10=client_http10,
            upgrade=upgrade,
        )
    if upgrade:
        parts += (b"Upgrade: ", upgrade_value, b"\r\nConnection: upgrade\r\n")
    else:
        if framing == FRAMING_CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if close:
            parts.append(b"Connection: close\r\n")
        elif client_http10:
            parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_framing(
    status: int, headers: Headers, *, head_request: bool, client_http10: bool
) -> tuple[int, bool]:
    """How the client-side body is framed, and whether the client connection must close after it.

    Upstream chunked or length-less bodies are re-chunked for HTTP/1.1 clients; an HTTP/1.0 client
    gets a close-delimited body instead (it cannot read chunks).
    """
    if head_request or status in (204, 304) or 100 <= status < 200:
        return FRAMING_NONE, False
    has_length = False
    for name, _ in headers:
        size = len(name)
        if size == 17 and name.lower() == b"transfer-encoding":
            return (FRAMING_CLOSE, True) if client_http10 else (FRAMING_CHUNKED, False)
        if size == 14 and name.lower() == b"content-length":
            has_length = True
    if has_length:
        return FRAMING_LENGTH, False
    return (FRAMING_CLOSE, True) if client_http10 else (FRAMING_CHUNKED, False)


def upstream_keeps_alive(http_minor: int, connection: bytes | None) -> bool:
    """Whether the upstream connection may be reused after this response, from its version and
    its `Connection` header value (None when absent)."""
    if connection is None:
        return http_minor != 0
    plain = connection.lower()
    if plain == b"keep-alive":  # what most upstreams send
        return True
    if plain == b"close":
        return False
    tokens = (
        frozenset(t.strip().lower() for t in connection.split(b",")) if connection else frozenset()
    )
    if http_minor == 0:
        return b"keep-alive" in tokens
    return b"close" not in tokens


def local_response(
    status: int,
    reason: bytes,
    headers: Headers,
    body: bytes,
    *,
    close: bool,
    head_only: bool = False,
) -> bytes:
    """A complete response the proxy makes itself (errors, redirects): length always set."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    parts += [b"%s: %s\r\n" % (name, value) for name, value in headers]
    parts.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


def error_response(status: int, reason: str, body: str, *, close: bool) -> bytes:
    """A complete small text/plain response generated by the proxy itself."""
    headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
    return local_response(status, reason.encode(), headers, body.encode() + b"\n", close=close)


_REDIRECT_REASONS: Final = {
    301: b"Moved Permanently",
    302: b"Found",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
}


def redirect_body(status: int) -> tuple[bytes, bytes]:
    """The reason phrase and the short HTML body of a redirect, as NGINX's `return 301` sends."""
    reason = _REDIRECT_REASONS[status]
    body = b"<html><head><title>%d %s</title></head><body>%d %s</body></html>\n" % (
        status,
        reason,
        status,
        reason,
    )
    return reason, body
