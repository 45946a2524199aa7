"""Transactions on etcd: the Txn request for compares and ops, and the check that makes a
guarded write safe to retry after its outcome was lost.

Every Txn reads, when its compares fail, the compared keys and the keys of its ops (the failure
branch), so a failed compare is reported from the same revision it failed at. A write whose
connection broke while it was out is retried only when it is `checkable`: applying it makes one
of its own compares false (it writes a compared key that the compare says is present, or creates
one the compare says is absent). The retry then either applies it (the first try did not) or
fails its compare; in that case `applied_at` looks at the keys for the first try's effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aetcd.rpc as rpc  # type: ignore[import-untyped]

from corral.store._etcd_codec import KeyCodec
from corral.store._rules import compare_failure
from corral.store.base import Compare, CompareFailed, Delete, KeyValue, Op, Put


def _compare(codec: KeyCodec, compare: Compare) -> Any:
    if compare.mod_revision == 0:
        return rpc.Compare(
            key=codec.key(compare.key),
            result=rpc.Compare.EQUAL,
            target=rpc.Compare.CREATE,
            create_revision=0,
        )
    return rpc.Compare(
        key=codec.key(compare.key),
        result=rpc.Compare.EQUAL,
        target=rpc.Compare.MOD,
        mod_revision=compare.mod_revision,
    )


def _op(codec: KeyCodec, op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=codec.key(op.key), value=bytes(op.value), lease=op.lease)
        )
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=codec.key(op.key)))


def read_keys(compares: Sequence[Compare], ops: Sequence[Op]) -> list[str]:
    """The keys the failure branch reads: compared keys, then op keys, each once."""
    keys: list[str] = []
    for key in [c.key for c in compares] + [op.key for op in ops]:
        if key not in keys:
            keys.append(key)
    return keys


def txn_request(codec: KeyCodec, compares: Sequence[Compare], ops: Sequence[Op]) -> Any:
    """The etcd TxnRequest: compares, ops on success, reads of `read_keys` on failure."""
    return rpc.TxnRequest(
        compare=[_compare(codec, c) for c in compares],
        success=[_op(codec, op) for op in ops],
        failure=[
            rpc.RequestOp(request_range=rpc.RangeRequest(key=codec.key(key)))
            for key in read_keys(compares, ops)
        ]
        if compares
        else [],
    )


def failure_reads(
    codec: KeyCodec, keys: Sequence[str], response: Any
) -> dict[str, KeyValue | None]:
    """What the failure branch read: key → KeyValue (None when absent)."""
    found: dict[str, KeyValue | None] = {}
    for key, answer in zip(keys, response.responses, strict=False):
        kvs = answer.response_range.kvs
        found[key] = codec.kv(kvs[0]) if kvs else None
    return found


def first_failed(compares: Sequence[Compare], current: dict[str, KeyValue | None]) -> CompareFailed:
    """CompareFailed naming the first compare that does not hold against `current`."""
    for compare in compares:
        kv = current.get(compare.key)
        holds = (
            kv is None
            if compare.mod_revision == 0
            else (kv is not None and kv.mod_revision == compare.mod_revision)
        )
        if not holds:
            return compare_failure(compare.key, kv, compare.mod_revision)
    first = compares[0]
    return compare_failure(first.key, current.get(first.key), first.mod_revision)


def checkable(compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
    """True when applying the txn makes one of its own compares false (see module docstring)."""
    written = {op.key: op for op in ops}
    for compare in compares:
        op = written.get(compare.key)
        if isinstance(op, Put):
            return True
        if isinstance(op, Delete) and compare.mod_revision != 0:
            return True
    return False


def applied_at(ops: Sequence[Op], current: dict[str, KeyValue | None], after: int) -> int | None:
    """The revision the first try applied `ops` at, judged from the keys now (`current`), or
    None when they do not show it: every Put's key holds its value and lease at one common
    mod_revision later than `after` (the last revision seen before the first try), and every
    Delete's key is absent. 0 means "applied, at a revision the keys do not tell" (only
    deletes): the caller answers the current revision."""
    revisions: set[int] = set()
    for op in ops:
        kv = current.get(op.key)
        if isinstance(op, Put):
            if kv is None or kv.value != bytes(op.value) or kv.lease != op.lease:
                return None
            revisions.add(kv.mod_revision)
        elif kv is not None:
            return None
    if len(revisions) > 1:
        return None
    if revisions:
        revision = revisions.pop()
        return revision if revision > after else None
    return 0 if ops else None
