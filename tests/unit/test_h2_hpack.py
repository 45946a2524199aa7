"""The proxy's HPACK encoder: static table only, fields cached, decodable by any HPACK decoder."""

from __future__ import annotations

from hpack import Decoder

from corral.proxy import h2_hpack
from corral.proxy.h2_hpack import StaticTableEncoder

FIELDS = [
    (b":status", b"200"),
    (b"server", b"nginx/1.22.1"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"3"),
    (b"x-request-id", b"0123456789abcdef"),
    (b"x-long", b"v" * 300),
    (b"set-cookie", b"session=secret"),
    (b"x-empty", b""),
]


def test_blocks_decode_to_the_fields_every_time() -> None:
    """Repeated blocks decode to the same fields with a standard decoder keeping its state."""
    encoder, decoder = StaticTableEncoder(), Decoder()
    blocks = [encoder.encode(FIELDS) for _ in range(3)]
    for block in blocks:
        assert decoder.decode(block, raw=True) == FIELDS
    assert blocks[0] == blocks[1] == blocks[2]  # nothing indexed: the same bytes each time


def test_the_dynamic_table_stays_empty() -> None:
    """Neither the encoder's nor the client's dynamic table receives an entry."""
    encoder, decoder = StaticTableEncoder(), Decoder()
    decoder.decode(encoder.encode(FIELDS), raw=True)
    assert len(encoder.header_table.dynamic_entries) == 0
    assert len(decoder.header_table.dynamic_entries) == 0


def test_a_field_of_the_static_table_is_one_byte() -> None:
    """`:status 200` is the static table's index 8: one indexed byte."""
    assert StaticTableEncoder().encode([(b":status", b"200")]) == b"\x88"


def test_a_smaller_table_size_is_announced_first() -> None:
    """After the client shrinks the table, the next block starts with the size update."""
    encoder, decoder = StaticTableEncoder(), Decoder()
    encoder.header_table_size = 0
    block = encoder.encode([(b":status", b"204")])
    assert block[0] == 0x20  # a dynamic table size update to 0
    assert decoder.decode(block, raw=True) == [(b":status", b"204")]
    assert decoder.header_table.maxsize == 0
    assert encoder.encode([(b":status", b"204")])[0] != 0x20  # announced once


def test_credentials_and_long_values_are_not_cached() -> None:
    """set-cookie values and values over the limit are encoded each time, never kept."""
    StaticTableEncoder().encode(FIELDS)
    assert (b"set-cookie", b"session=secret") not in h2_hpack._cache
    assert (b"x-long", b"v" * 300) not in h2_hpack._cache
    assert (b"server", b"nginx/1.22.1") in h2_hpack._cache
