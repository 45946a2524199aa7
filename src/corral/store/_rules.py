"""The write rules every backend applies: compare-on-revision and the next KeyValue."""

from __future__ import annotations

from corral.store.base import CompareFailed, KeyValue


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


def next_kv(key: str, value: bytes, prev: KeyValue | None, revision: int) -> KeyValue:
    """The KeyValue a put at `revision` produces after `prev`."""
    if prev is None:
        return KeyValue(key, value, revision, revision, 1)
    return KeyValue(key, value, prev.create_revision, revision, prev.version + 1)


def check_compare(key: str, current: KeyValue | None, expected_mod_revision: int | None) -> None:
    """Raise CompareFailed unless the compare rule holds for `current`."""
    if not compare_holds(current, expected_mod_revision):
        assert expected_mod_revision is not None
        raise compare_failure(key, current, expected_mod_revision)


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
