"""The write rules every embedded backend applies: the compare rule, the next KeyValue, and
planning a transaction into the events it produces (pure: the backend persists them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from corral.store.base import (
    Compare,
    CompareFailed,
    Delete,
    Event,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
)


def compare_holds(current: KeyValue | None, expected_mod_revision: int | None) -> bool:
    """The store's compare rule: None always holds, 0 means absent, N means mod_revision N."""
    if expected_mod_revision is None:
        return True
    if expected_mod_revision == 0:
        return current is None
    return current is not None and current.mod_revision == expected_mod_revision


def compare_failure(key: str, current: KeyValue | None, expected: int) -> CompareFailed:
    """A CompareFailed that says what was expected and what was found."""
    found = "absent" if current is None else f"at mod_revision {current.mod_revision}"
    wanted = "absent" if expected == 0 else f"at mod_revision {expected}"
    return CompareFailed(f"key {key!r} is {found}, expected it {wanted}")


def next_kv(
    key: str, value: bytes, prev: KeyValue | None, revision: int, lease: int = 0
) -> KeyValue:
    """The KeyValue a put at `revision` (attached to `lease`, 0 = none) produces after `prev`."""
    if prev is None:
        return KeyValue(key, value, revision, revision, 1, lease)
    return KeyValue(key, value, prev.create_revision, revision, prev.version + 1, lease)


def deleted_kv(prev: KeyValue, revision: int) -> KeyValue:
    """The KeyValue a delete event at `revision` carries (no value, version 0)."""
    return KeyValue(prev.key, b"", prev.create_revision, revision, 0)


def single_key_compares(key: str, expected_mod_revision: int | None) -> list[Compare]:
    """The compares of a `put`/`delete` with `expected_mod_revision` (none when it is None)."""
    return [] if expected_mod_revision is None else [Compare(key, expected_mod_revision)]


def check_ops(ops: Sequence[Op]) -> None:
    """ValueError when a key appears in two ops (etcd refuses that too), TypeError for an op
    that is neither Put nor Delete."""
    seen: set[str] = set()
    for op in ops:
        if not isinstance(op, Put | Delete):
            raise TypeError(f"txn op {op!r} is not a Put or a Delete")
        if op.key in seen:
            raise ValueError(f"txn: key {op.key!r} appears in more than one op; use one op per key")
        seen.add(op.key)


def plan_txn(
    compares: Sequence[Compare],
    ops: Sequence[Op],
    revision: int,
    current: Callable[[str], KeyValue | None],
    lease_alive: Callable[[int], bool],
) -> list[Event]:
    """The events `ops` produce at `revision`, in op order, when every compare holds (else
    CompareFailed naming the first failing compare) and every lease a Put names is alive (else
    LeaseNotFound). An empty list means the txn changes nothing. Reads only through `current`
    (the state before the txn: keys are distinct, so no op sees another's write)."""
    check_ops(ops)
    for compare in compares:
        found = current(compare.key)
        if not compare_holds(found, compare.mod_revision):
            raise compare_failure(compare.key, found, compare.mod_revision)
    for op in ops:
        if isinstance(op, Put) and op.lease and not lease_alive(op.lease):
            raise LeaseNotFound(op.lease)
    events: list[Event] = []
    for op in ops:
        prev = current(op.key)
        if isinstance(op, Put):
            kv = next_kv(op.key, bytes(op.value), prev, revision, op.lease)
            events.append(Event("put", kv, prev))
        elif prev is not None:
            events.append(Event("delete", deleted_kv(prev, revision), prev))
    return events


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:  # surrogates cannot be stored; skip past them
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
