"""The HPACK encoder of the proxy's HTTP/2 connections: the static table only, as HAProxy's.

h2's encoder (hpack's `Encoder`) looks every field up in, and adds it to, the dynamic table:
per response header a search, an insertion with evictions, debug-log calls and a Huffman pass, all
in Python. This encoder never adds to the dynamic table (RFC 7541 §6.2.2 "literal header field
without indexing", the representation HAProxy's encoder uses for responses), so a field always
encodes to the same bytes: those are computed once and then taken from a bounded cache shared by
all connections. A field costs a few more bytes on the wire than an indexed one the second time
it is sent; the CPU per response header is a dictionary lookup. The client may still shrink the
dynamic table it keeps for us (SETTINGS_HEADER_TABLE_SIZE): the size update is sent as RFC 7541
§4.2 requires, though the table stays empty.
"""

from __future__ import annotations

from typing import Any

from hpack import Encoder
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

_STATIC = HeaderTable.STATIC_TABLE_MAPPING  # name → (lowest index, {value: index})
CACHE_LIMIT = 4096  # fields; the cache is emptied when it is full
CACHED_VALUE_BYTES = 128  # longer values (tokens, long URLs) are encoded each time
_UNCACHED_NAMES = frozenset({b"set-cookie"})  # credentials are not kept around
_cache: dict[tuple[bytes, bytes], bytes] = {}


class StaticTableEncoder(Encoder):
    """hpack's `Encoder` with fields encoded without indexing (see the module)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        """The header block of `headers`: `(name, value)` pairs of lower-case `bytes`,
        pseudo-headers first (the streams build them so; `huffman` is decided per string)."""
        block: list[bytes] = []
        table = self.header_table
        if table.resized:
            block.append(self._encode_table_size_change())
            table.resized = False
        cache = _cache
        for field in headers:
            encoded = cache.get(field)
            if encoded is None:
                name, value = field
                encoded = self._field(name, value)
                if len(value) <= CACHED_VALUE_BYTES and name not in _UNCACHED_NAMES:
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[(name, value)] = encoded
            block.append(encoded)
        return b"".join(block)

    def _field(self, name: bytes, value: bytes) -> bytes:
        """One field: indexed if the static table has it whole, else a literal without
        indexing (with the static table's index of the name when it has the name)."""
        static = _STATIC.get(name)
        if static is not None:
            index = static[1].get(value)
            if index is not None:
                prefix = encode_integer(index, 7)
                prefix[0] |= 0x80
                return bytes(prefix)
            prefix = encode_integer(static[0], 4)  # 0000 + the name's index
            return bytes(prefix) + self._string(value)
        return b"\x00" + self._string(name) + self._string(value)

    def _string(self, data: bytes) -> bytes:
        """An HPACK string literal, Huffman-coded when that is shorter."""
        coded = self.huffman_coder.encode(data)
        if len(coded) < len(data):
            length = encode_integer(len(coded), 7)
            length[0] |= 0x80
            return bytes(length) + coded
        return bytes(encode_integer(len(data), 7)) + data
