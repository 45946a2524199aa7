"""Response headers a server block adds or hides, worked out once per server block.

`hide_response_headers` drops those headers from the upstream's responses (NGINX's
`proxy_hide_header`); `add_response_headers` and `tls.hsts` add headers to every response of
the server, the upstream's and the proxy's own (errors, redirects), as NGINX's
`add_header ... always` does. An added header comes after whatever the upstream sent of the
same name, except `Strict-Transport-Security` under `tls.hsts`, which replaces the upstream's
(browsers heed only the first one, RFC 6797 §8.1).

A server block with none of these has no `ResponseHeaders` at all (`None`), so its responses
take exactly the path they took before these keys existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from corral.config.lb import Server

HeaderList = list[tuple[bytes, bytes]]
_STS: Final = b"strict-transport-security"


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    """One server block's response-header changes, as bytes ready for either protocol."""

    hidden: frozenset[bytes]  # lower-case names dropped from upstream responses
    hidden_lengths: frozenset[int]  # their lengths: other names skip the lower-casing
    added: tuple[tuple[bytes, bytes], ...]  # (name, value) appended to every response

    def apply(self, headers: Sequence[tuple[bytes, bytes]]) -> HeaderList:
        """An upstream response's headers with the hidden ones dropped and the added ones
        appended (a new list: the caller's may still grow, e.g. by trailers)."""
        hidden = self.hidden
        if hidden:
            lengths = self.hidden_lengths
            kept = [
                (name, value)
                for name, value in headers
                if len(name) not in lengths or name.lower() not in hidden
            ]
        else:
            kept = list(headers)
        kept += self.added
        return kept

    def local(self, headers: Sequence[tuple[bytes, bytes]]) -> HeaderList:
        """A response the proxy makes itself: its own headers plus the added ones."""
        return [*headers, *self.added]


def response_headers(server: Server) -> ResponseHeaders | None:
    """The changes `server` asks for, or None when it asks for none."""
    hidden = {name.lower().encode() for name in server.hide_response_headers}
    added = [(name.encode(), value.encode()) for name, value in server.add_response_headers.items()]
    hsts = server.tls.hsts if server.tls is not None else None
    if hsts is not None:
        hidden.add(_STS)
        added.insert(0, (b"Strict-Transport-Security", hsts.header_value.encode()))
    if not hidden and not added:
        return None
    return ResponseHeaders(
        hidden=frozenset(hidden),
        hidden_lengths=frozenset(len(name) for name in hidden),
        added=tuple(added),
    )
