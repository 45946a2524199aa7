"""Resources kept in the store as JSON under `/corral/<collection>/<id>`, with optimistic
concurrency: every update and delete compares on the mod revision that was read, and writes that
touch several keys go through one store transaction (`Records.put_op` & co. build its parts)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corral.server.domain.errors import AlreadyExists, ChangedConcurrently, NotFound
from corral.store.base import Compare, CompareFailed, Delete, KeyValue, Op, Put, Store

KEY_ROOT = "/corral/"
# The collections (the keyspace under KEY_ROOT), named once here so modules need not import
# each other for a prefix.
USERS = "users"
USERNAMES = "usernames"
TOKENS = "tokens"
SETTINGS = "settings"
CLUSTERS = "clusters"
REGISTRATION_TOKENS = "clusterregistrationtokens"
BOOTSTRAP = "bootstrap"
CREATE_ATTEMPTS = 8  # random ids collide rarely; give up after this many tries
#: Most operations one transaction may carry: etcd's default `--max-txn-ops`.
MAX_TXN_OPS = 128

Change = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


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


def chunks(ops: Sequence[Op], size: int = MAX_TXN_OPS) -> list[list[Op]]:
    """`ops` cut into transactions of at most `size` operations."""
    return [list(ops[i : i + size]) for i in range(0, len(ops), size)]


class Records:
    """CRUD of one collection's stored JSON objects; `noun` names one item in messages."""

    def __init__(self, store: Store, collection: str, noun: str) -> None:
        self.store = store
        self.collection = collection
        self.noun = noun
        self.prefix = f"{KEY_ROOT}{collection}/"

    # -- transaction parts -----------------------------------------------------------------

    def key(self, item_id: str) -> str:
        """The store key of one item."""
        return self.prefix + item_id

    def put_op(self, item_id: str, data: dict[str, Any]) -> Put:
        """A transaction's write of one item."""
        return Put(self.prefix + item_id, encode(data))

    def delete_op(self, item_id: str) -> Delete:
        """A transaction's deletion of one item."""
        return Delete(self.prefix + item_id)

    def absent(self, item_id: str) -> Compare:
        """A transaction's condition: the item does not exist."""
        return Compare(self.prefix + item_id, 0)

    def unchanged(self, record: Record) -> Compare:
        """A transaction's condition: the item is still as `record` read it."""
        return Compare(self.prefix + record.id, record.mod_revision)

    def changed_error(self, item_id: str) -> ChangedConcurrently:
        """The error for a lost compare on one item."""
        return ChangedConcurrently(
            f"{self.noun} {item_id!r} was changed by another request; read it again and retry"
        )

    # -- reads -----------------------------------------------------------------------------

    async def get(self, item_id: str) -> Record | None:
        """The resource, or None."""
        if not item_id or "/" in item_id:
            return None
        kv = await self.store.get(self.prefix + item_id)
        return decode(kv) if kv else None

    async def require(self, item_id: str) -> Record:
        """The resource, or NotFound."""
        record = await self.get(item_id)
        if record is None:
            raise NotFound(f"{self.noun} {item_id!r} not found")
        return record

    async def list(self) -> tuple[list[Record], int]:
        """Every resource in id order, and the store revision of the read."""
        kvs, revision = await self.store.range(self.prefix)
        return [decode(kv) for kv in kvs], revision

    # -- single-key writes -----------------------------------------------------------------

    async def create(self, item_id: str, data: dict[str, Any]) -> Record:
        """Write a new resource; AlreadyExists if the id is taken."""
        try:
            revision = await self.store.create(self.prefix + item_id, encode(data))
        except CompareFailed:
            raise AlreadyExists(f"{self.noun} {item_id!r} already exists") from None
        return Record(id=item_id, data=data, mod_revision=revision)

    async def create_with_new_id(self, new_id: Callable[[], str], data: dict[str, Any]) -> Record:
        """Write a new resource under a fresh random id (retrying on collision)."""
        for _ in range(CREATE_ATTEMPTS):
            item_id = new_id()
            try:
                revision = await self.store.create(self.prefix + item_id, encode(data))
            except CompareFailed:
                continue
            return Record(id=item_id, data=data, mod_revision=revision)
        raise ChangedConcurrently(f"could not allocate a free {self.noun} id; try again")

    async def replace(self, record: Record, data: dict[str, Any]) -> Record:
        """Write `data` over `record` only if nobody changed it since it was read."""
        try:
            revision = await self.store.put(
                self.prefix + record.id, encode(data), expected_mod_revision=record.mod_revision
            )
        except CompareFailed:
            raise self.changed_error(record.id) from None
        return Record(id=record.id, data=data, mod_revision=revision)

    async def update(self, item_id: str, change: Change) -> Record:
        """Read, apply `change` to a copy, write back comparing on the read revision.
        NotFound when the resource does not exist; ChangedConcurrently when the race is lost."""
        record = await self.require(item_id)
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
            raise self.changed_error(record.id) from None
        return revision is not None

    async def delete_id(self, item_id: str) -> bool:
        """Delete by id without a compare; False when absent."""
        return await self.store.delete(self.prefix + item_id) is not None
