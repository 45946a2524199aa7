"""Durations and sizes as written in YAML."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from corral.config.units import Duration, Size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("900s", 900.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        (" 30s ", 30.0),
        ("30", 30.0),
        ("0", 0.0),
        (30, 30.0),
        (30.5, 30.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    """Each accepted duration form converts to the right number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        -1,
        -0.5,
        "",
        "abc",
        "15 minutes",
        "1x",
        "m",
        "-5s",
        "1h-30m",
        "s30",
        float("nan"),
        float("inf"),
        None,
        [1],
    ],
)
def test_parse_duration_rejects_with_accepted_forms(value: object) -> None:
    """Garbage, booleans and negatives raise ValueError that lists the accepted forms."""
    with pytest.raises(ValueError, match=r'"15m"'):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("32k", 32 * 1024),
        ("32K", 32 * 1024),
        ("32KiB", 32 * 1024),
        ("32kb", 32 * 1024),
        ("1m", 1024**2),
        ("1MiB", 1024**2),
        ("1g", 1024**3),
        ("1G", 1024**3),
        ("10b", 10),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: str | int, size: int) -> None:
    """Each accepted size form converts to bytes with k = 1024."""
    assert parse_size(text) == size


@pytest.mark.parametrize("value", [True, -1, "", "k", "1.5k", "32x", "32 kilobytes", "-1k", 1.5])
def test_parse_size_rejects_with_accepted_forms(value: object) -> None:
    """Garbage, booleans, fractions and negatives raise ValueError listing the accepted forms."""
    with pytest.raises(ValueError, match=r'"32k"'):
        parse_size(value)  # type: ignore[arg-type]


class _Limits(BaseModel):
    timeout: Duration
    buffer: Size


def test_pydantic_field_types_convert() -> None:
    """Duration and Size work as pydantic field types."""
    limits = _Limits.model_validate({"timeout": "15m", "buffer": "32k"})
    assert (limits.timeout, limits.buffer) == (900.0, 32768)


def test_pydantic_field_types_report_forms() -> None:
    """A bad Duration in a model fails validation with the accepted forms in the message."""
    with pytest.raises(ValidationError, match="1h30m"):
        _Limits.model_validate({"timeout": "soon", "buffer": 1})
