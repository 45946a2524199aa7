"""Durations and sizes as people write them in YAML ("15m", "32k"), for pydantic fields."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

DURATION_FORMS = 'a number of seconds (30, 0.5) or a string such as "500ms", "900s", "15m", "1h30m"'
SIZE_FORMS = 'a number of bytes (4096) or a string such as "32k", "32KiB", "1m", "1MiB", "1g"'

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"(\d+)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)


def parse_duration(value: str | int | float) -> float:
    """Return seconds for ``30``, ``30.5``, ``"500ms"``, ``"900s"``, ``"15m"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got a boolean; use {DURATION_FORMS}")
    if isinstance(value, int | float):
        return _non_negative_seconds(float(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a duration; use {DURATION_FORMS}")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return _non_negative_seconds(float(text))
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{value!r} is not a duration; use {DURATION_FORMS}")
    return total


def _non_negative_seconds(seconds: float) -> float:
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number >= 0; use {DURATION_FORMS}")
    return seconds


def parse_size(value: str | int) -> int:
    """Return bytes for ``4096``, ``"32k"``, ``"32KiB"``, ``"1MiB"``, ``"1g"`` (k = 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got a boolean; use {SIZE_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must be >= 0; use {SIZE_FORMS}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size; use {SIZE_FORMS}")
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size; use {SIZE_FORMS}")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as ``30`` or ``"15m"``."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written as ``4096`` or ``"32k"``."""
