"""HPACK for the proxy's HTTP/2 connections: a static-table-only encoder (as HAProxy's) and a
decoder whose loop decodes indexed fields inline.

h2's encoder (hpack's `Encoder`) looks every field up in, and adds it to, the dynamic table:
per response header a search, an insertion with evictions, debug-log calls and a Huffman pass, all
in Python. This encoder never adds to the dynamic table (RFC 7541 §6.2.2 "literal header field
without indexing", the representation HAProxy's encoder uses for responses), so a field always
encodes to the same bytes: those are computed once and then taken from a bounded cache shared by
all connections. A field costs a few more bytes on the wire than an indexed one the second time
it is sent; the CPU per response header is a dictionary lookup. The client may still shrink the
dynamic table it keeps for us (SETTINGS_HEADER_TABLE_SIZE): the size update is sent as RFC 7541
§4.2 requires, though the table stays empty.

hpack's `Decoder` spends, per field, a log call, two tuple objects and a few function calls on
what is, for an indexed field (nearly every field of a client's second and later requests: the
client's dynamic table holds them), one table lookup. `IndexedFastDecoder` runs hpack's own
decoding loop with that case inline; literals, table size updates and errors go through hpack's
methods unchanged, so the dynamic table, Huffman coding and every limit behave as hpack's.
"""

from __future__ import annotations

from typing import Any

from hpack import Decoder, Encoder
from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, OversizedHeaderListError
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

_STATIC = HeaderTable.STATIC_TABLE_MAPPING  # name → (lowest index, {value: index})
_STATIC_ENTRIES = HeaderTable.STATIC_TABLE
_STATIC_LENGTH = HeaderTable.STATIC_TABLE_LENGTH
ENTRY_OVERHEAD = 32  # RFC 7541 §4.1: a field's size is its name and value plus 32 bytes
# The static table's entries by the first byte of their one-byte indexed representation
# (0x81-0xbd: indices 1-61); None for every other byte. 0xbe-0xfe index the dynamic table.
_STATIC_BY_BYTE: list[tuple[bytes, bytes] | None] = [None] * 256
for _index, _entry in enumerate(_STATIC_ENTRIES, start=1):
    _STATIC_BY_BYTE[0x80 | _index] = _entry
_FIRST_DYNAMIC_BYTE = 0x80 | (_STATIC_LENGTH + 1)
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


class IndexedFastDecoder(Decoder):
    """hpack's `Decoder` with indexed fields decoded inline (see the module). `decode` returns
    `(name, value)` tuples of bytes, as hpack's does with `raw=True` (h2 always asks for that)."""

    def decode(self, data: bytes, raw: bool = False) -> Any:
        """The fields of a header block; hpack's errors for a malformed or oversized one."""
        if not raw:
            return super().decode(data, raw)
        view = memoryview(data)
        dynamic = self.header_table.dynamic_entries
        headers: list[tuple[bytes, bytes]] = []
        append = headers.append
        pos = 0
        end = len(data)
        try:
            while pos < end:
                first = data[pos]
                header = _STATIC_BY_BYTE[first]
                if header is not None:  # indexed, from the static table, the index in this byte
                    append(header)
                    pos += 1
                    continue
                if _FIRST_DYNAMIC_BYTE <= first < 0xFF:  # the same from the dynamic table
                    index = first - _FIRST_DYNAMIC_BYTE
                    if index >= len(dynamic):
                        raise InvalidTableIndex(f"Invalid table index {first & 0x7F}")
                    append(dynamic[index])
                    pos += 1
                    continue
                if first & 0x80:  # indexed with a longer index, or the invalid index 0
                    header, consumed = self._decode_indexed(view[pos:])
                elif first & 0x40:
                    header, consumed = self._decode_literal_index(view[pos:])
                elif first & 0x20:
                    if headers:
                        raise HPACKDecodingError("Table size update not at the start of the block")
                    pos += self._update_encoding_context(view[pos:])
                    continue
                else:
                    header, consumed = self._decode_literal_no_index(view[pos:])
                append(header)
                pos += consumed
        except Exception:
            self._check_size(headers)  # hpack would have stopped at the limit first
            raise
        # The list's size counted once at the end (hpack counts field by field): it holds
        # references to table entries and literals of this block only, so it cannot grow
        # beyond the block before the limit is checked.
        self._check_size(headers)
        self._assert_valid_table_size()
        return headers

    def _check_size(self, headers: list[tuple[bytes, bytes]]) -> None:
        """hpack's error for a header list over `max_header_list_size`."""
        size = sum([len(name) + len(value) for name, value in headers])
        size += ENTRY_OVERHEAD * len(headers)
        if size > self.max_header_list_size:
            raise OversizedHeaderListError(
                f"A header list larger than {self.max_header_list_size} has been received"
            )
