"""Resources kept in the store as JSON under `/corral/<collection>/<id>`, with optimistic
concurrency: every update and delete compares on the mod revision that was read."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from corral.server.api.errors import Conflict
from corral.store.base import CompareFailed, KeyValue, Store

KEY_ROOT = "/corral/"
CREATE_ATTEMPTS = 8  # random ids collide rarely; give up after this many tries


@dataclass(frozen=True, slots=True)
class Record:
    """One stored resource: its id, its JSON object and the revision it was read at."""

    id: str
    data: dict[str, Any]
    mod_revision: int


def key_of(collection: str, item_id: str) -> str:
    """The store key of a resource."""
    return f"{KEY_ROOT}{collection}/{item_id}"


def split_key(key: str) -> tuple[str, str] | None:
    """(collection, id) of a store key under KEY_ROOT, or None for anything else."""
    if not key.startswith(KEY_ROOT):
        return None
    collection, sep, item_id = key[len(KEY_ROOT) :].partition("/")
    if not sep or not item_id:
        return None
    return collection, item_id


def decode(kv: KeyValue) -> Record:
    """A Record from a stored key/value (the value is a JSON object)."""
    parts = split_key(kv.key)
    item_id = parts[1] if parts else kv.key
    data = json.loads(kv.value) if kv.value else {}
    if not isinstance(data, dict):
        raise ValueError(f"store key {kv.key} does not hold a JSON object")
    return Record(id=item_id, data=data, mod_revision=kv.mod_revision)


def encode(data: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a resource."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")


class Records:
    """CRUD of one collection's stored JSON objects."""

    def __init__(self, store: Store, collection: str) -> None:
        self.store = store
        self.collection = collection
        self.prefix = f"{KEY_ROOT}{collection}/"

    async def get(self, item_id: str) -> Record | None:
        """The resource, or None."""
        if not item_id or "/" in item_id:
            return None
        kv = await self.store.get(self.prefix + item_id)
        return decode(kv) if kv else None

    async def list(self) -> tuple[list[Record], int]:
        """Every resource in id order, and the store revision of the read."""
        kvs, revision = await self.store.range(self.prefix)
        return [decode(kv) for kv in kvs], revision

    async def create(self, item_id: str, data: dict[str, Any]) -> Record:
        """Write a new resource; Conflict if the id is taken."""
        try:
            revision = await self.store.create(self.prefix + item_id, encode(data))
        except CompareFailed:
            raise Conflict(f"{self.collection} {item_id!r} already exists") from None
        return Record(id=item_id, data=data, mod_revision=revision)

    async def create_with_new_id(
        self, new_id: Callable[[], str], data: dict[str, Any]
    ) -> Record:
        """Write a new resource under a fresh random id (retrying on collision)."""
        for _ in range(CREATE_ATTEMPTS):
            item_id = new_id()
            try:
                revision = await self.store.create(self.prefix + item_id, encode(data))
            except CompareFailed:
                continue
            return Record(id=item_id, data=data, mod_revision=revision)
        raise Conflict(f"could not allocate a free {self.collection} id; try again")

    async def replace(self, record: Record, data: dict[str, Any]) -> Record:
        """Write `data` over `record` only if nobody changed it since it was read."""
        try:
            revision = await self.store.put(
                self.prefix + record.id, encode(data), expected_mod_revision=record.mod_revision
            )
        except CompareFailed:
            raise Conflict(
                f"{self.collection} {record.id!r} was changed by another request; "
                "read it again and retry"
            ) from None
        return Record(id=record.id, data=data, mod_revision=revision)

    async def update(
        self,
        item_id: str,
        change: Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]],
    ) -> Record | None:
        """Read, apply `change` to a copy, write back comparing on the read revision.
        None when the resource does not exist; Conflict when the race is lost."""
        record = await self.get(item_id)
        if record is None:
            return None
        result = change(dict(record.data))
        data = await result if not isinstance(result, dict) else result
        return await self.replace(record, data)

    async def delete(self, record: Record) -> bool:
        """Delete `record` if unchanged since read; False when it is already gone."""
        try:
            revision = await self.store.delete(
                self.prefix + record.id, expected_mod_revision=record.mod_revision
            )
        except CompareFailed:
            raise Conflict(
                f"{self.collection} {record.id!r} was changed by another request; "
                "read it again and retry"
            ) from None
        return revision is not None

    async def delete_id(self, item_id: str) -> bool:
        """Delete by id without a compare (cascades); False when absent."""
        return await self.store.delete(self.prefix + item_id) is not None
