"""Between the store's types and etcd's messages: keys under a namespace, KeyValue, Event."""

from __future__ import annotations

from typing import Any

from corral.store.base import Event, KeyValue

ALL_KEYS = b"\x00"  # as a range_end: "to the end of the keyspace"


def bytes_prefix_end(prefix: bytes) -> bytes:
    """The range_end covering every key that starts with `prefix` (ALL_KEYS for none)."""
    data = bytearray(prefix)
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return ALL_KEYS


class KeyCodec:
    """Store keys (str) ↔ etcd keys (bytes) under the namespace `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.namespace = prefix.encode("utf-8")

    def key(self, key: str) -> bytes:
        """The etcd key for a store key."""
        return self.namespace + key.encode("utf-8", "surrogateescape")

    def name(self, raw: bytes) -> str:
        """The store key for an etcd key under the namespace."""
        return raw[len(self.namespace) :].decode("utf-8", "surrogateescape")

    def span(self, prefix: str) -> tuple[bytes, bytes]:
        """(key, range_end) of every etcd key for store keys starting with `prefix`."""
        start = self.key(prefix)
        if not start:
            return ALL_KEYS, ALL_KEYS
        return start, bytes_prefix_end(start)

    def kv(self, message: Any) -> KeyValue:
        """A KeyValue from etcd's mvccpb.KeyValue."""
        return KeyValue(
            key=self.name(bytes(message.key)),
            value=bytes(message.value),
            create_revision=int(message.create_revision),
            mod_revision=int(message.mod_revision),
            version=int(message.version),
            lease=int(message.lease),
        )

    def event(self, message: Any) -> Event:
        """An Event from etcd's mvccpb.Event (requested with prev_kv)."""
        prev = self.kv(message.prev_kv) if message.HasField("prev_kv") else None
        if int(message.type) == 1:  # DELETE
            kv = KeyValue(
                key=self.name(bytes(message.kv.key)),
                value=b"",
                create_revision=prev.create_revision if prev is not None else 0,
                mod_revision=int(message.kv.mod_revision),
                version=0,
                lease=0,
            )
            return Event("delete", kv, prev)
        return Event("put", self.kv(message.kv), prev)
