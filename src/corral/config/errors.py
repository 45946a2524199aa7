"""Configuration problems that name the file, line, key and the fix.

Also turns pydantic validation errors into such problems: union-member tags dropped from the
key path, "did you mean" for unknown keys, a fix for each error, and secret values never shown.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic_core import ErrorDetails

from corral.config.units import parse_duration, parse_size

Loc = tuple[str | int, ...]
"""A key path: ``("servers", 0, "tls")``."""

SECRET_KEY = re.compile(r"password|token|secret|key", re.IGNORECASE)
HIDDEN = "(value hidden)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, and how to fix it."""

    file: str
    line: int | None
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        fix = f" — fix: {self.fix}" if self.fix else ""
        return f"{where}:{key} {self.message}{fix}"


class ConfigError(Exception):
    """A configuration that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems)  # args round-trip through pickle (worker processes)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def format_loc(loc: Loc) -> str:
    """Render a key path: ``("servers", 0, "tls")`` → ``"servers[0].tls"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


# ---------------------------------------------------------------- pydantic errors → problems


@dataclass
class _Resolved:
    """A pydantic error location with union-member tags removed, and the model it points into."""

    loc: Loc
    parent_model: type[pydantic.BaseModel] | None  # model owning the last key, if known
    field: Any  # pydantic FieldInfo of the last key, if known
    annotation: Any  # the type expected at ``loc`` (``Any`` when unknown)
    union_points: list[tuple[Loc, str]]  # (where, member tag) for each union crossed


def _strip_wrappers(annotation: Any) -> Any:
    """Remove Annotated[...] and Optional's None, keeping real unions."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _model_field(model: type[pydantic.BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias, info.validation_alias):
            return info
    return None


def _resolve(model: type[pydantic.BaseModel], loc: Loc) -> _Resolved:
    """Walk ``loc`` through the model's types, dropping the tags pydantic adds for unions."""
    clean: list[str | int] = []
    unions: list[tuple[Loc, str]] = []
    annotation: Any = model
    parent: type[pydantic.BaseModel] | None = None
    field: Any = None
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        annotation = _strip_wrappers(annotation)
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            unions.append((tuple(clean), str(part)))
            annotation = _union_member(members, str(part), parts[0] if parts else None)
            continue
        clean.append(part)
        if part == "[key]":
            clean.pop()
            annotation = Any
        elif _is_model(annotation) and isinstance(part, str):
            parent, field = annotation, _model_field(annotation, part)
            annotation = field.annotation if field is not None else Any
        elif origin in (list, set, frozenset, tuple, Sequence):
            args = typing.get_args(annotation)
            annotation = args[0] if args else Any
            parent, field = None, None
        elif origin in (dict, Mapping):
            args = typing.get_args(annotation)
            annotation = args[1] if len(args) == 2 else Any
            parent, field = None, None
        else:
            annotation, parent, field = Any, None, None
    return _Resolved(tuple(clean), parent, field, annotation, unions)


def _union_member(members: list[Any], tag: str, next_part: str | int | None) -> Any:
    """Pick the union member a pydantic loc tag names (class name, discriminator or type name)."""
    for member in members:
        plain = _strip_wrappers(member)
        if _is_model(plain) and plain.__name__ == tag:
            return plain
    for member in members:
        plain = _strip_wrappers(member)
        if _is_model(plain) and isinstance(next_part, str) and _model_field(plain, next_part):
            return plain
    return Any


def validation_problems(
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel],
    *,
    source: str,
    line_of: Callable[[Loc], int | None] = lambda loc: None,
) -> list[Problem]:
    """One Problem per pydantic error: line, dotted key, plain message, fix; secrets hidden.

    ``line_of`` maps a key path to its line in ``source`` (the YAML loader supplies it).
    """
    errors = [(err, _resolve(model, err["loc"])) for err in exc.errors()]
    kept = _choose_union_members(errors)
    problems: list[Problem] = []
    merged: dict[Loc, list[tuple[ErrorDetails, _Resolved]]] = {}
    for err, resolved in kept:
        if resolved.union_points and resolved.union_points[-1][0] == resolved.loc:
            merged.setdefault(resolved.loc, []).append((err, resolved))  # scalar union: merge
        else:
            problems.append(_problem(err, resolved, line_of, source))
    for group in merged.values():
        problems.append(_merged_problem(group, line_of, source))
    return problems


def _choose_union_members(
    errors: list[tuple[ErrorDetails, _Resolved]],
) -> list[tuple[ErrorDetails, _Resolved]]:
    """For a union of models keep only the errors of the member the input most resembles."""
    tally: dict[Loc, dict[str, list[int]]] = {}
    for err, resolved in errors:
        for where, tag in resolved.union_points:
            if resolved.loc == where:
                continue  # scalar members: merged later
            counts = tally.setdefault(where, {}).setdefault(tag, [0, 0])
            counts[1] += 1
            if err["type"] == "literal_error" and len(resolved.loc) == len(where) + 1:
                counts[0] += 1  # its discriminator-like field did not match: unlikely member
    best = {where: min(tags, key=lambda tag: tuple(tags[tag])) for where, tags in tally.items()}
    return [
        (err, resolved)
        for err, resolved in errors
        if all(best.get(where, tag) == tag for where, tag in resolved.union_points)
    ]


def _is_secret(loc: Loc) -> bool:
    """True when the key or any key above it is named like a secret (password, token, …)."""
    return any(isinstance(part, str) and SECRET_KEY.search(part) for part in loc)


def _plain(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def _hide(msg: str, value: Any) -> str:
    for shown in {repr(value), str(value)}:
        if shown and len(shown) >= 2:
            msg = msg.replace(shown, HIDDEN)
    return msg


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(
    err: ErrorDetails, resolved: _Resolved, line_of: Callable[[Loc], int | None], source: str
) -> Problem:
    loc = resolved.loc
    key = str(loc[-1]) if loc else ""
    line = line_of(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        fix = _unknown_fix(key, resolved)
        return Problem(source, line, format_loc(loc), f"unknown key `{key}`", fix)
    if kind == "missing":
        fix = _missing_fix(key, resolved)
        return Problem(source, line, format_loc(loc), f"required key `{key}` is missing", fix)
    secret = _is_secret(loc)
    message = _plain(err["msg"])
    if secret:
        message = f"{_hide(message, err.get('input'))} {HIDDEN}"
    else:
        message += _got(err, message)
    fix = _yaml_typing_fix(err) or _value_fix(resolved, kind)
    return Problem(source, line, format_loc(loc), message, fix)


def _yaml_typing_fix(err: ErrorDetails) -> str:
    """Advice when YAML turned text into a boolean or number (``on``, ``no``, ``1.10``)."""
    value = err.get("input")
    if err["type"] != "string_type" or value is None or not isinstance(value, bool | int | float):
        return ""
    kind = "a boolean (yes/no/on/off/true/false)" if isinstance(value, bool) else "a number"
    return f"put the value in quotes: unquoted, YAML reads it as {kind}"


def _got(err: ErrorDetails, message: str) -> str:
    """`` (got …)`` naming the input; only the kind for containers (they may hold secrets)."""
    value = err.get("input")
    if isinstance(value, dict):
        return " (got a mapping)"
    if isinstance(value, list):
        return " (got a list)"
    return "" if repr(value) in message else f" (got {_shown(value)})"


def _merged_problem(
    group: list[tuple[ErrorDetails, _Resolved]],
    line_of: Callable[[Loc], int | None],
    source: str,
) -> Problem:
    err, resolved = group[0]
    messages = list(dict.fromkeys(_plain(item["msg"]) for item, _ in group))
    message = "; or ".join(messages)
    if _is_secret(resolved.loc):
        message = f"{_hide(message, err.get('input'))} {HIDDEN}"
    else:
        message += _got(err, message)
    line = line_of(resolved.loc)
    return Problem(source, line, format_loc(resolved.loc), message, _value_fix(resolved, ""))


def _accepted_keys(model: type[pydantic.BaseModel]) -> list[str]:
    by_name = bool(model.model_config.get("populate_by_name")) or bool(
        model.model_config.get("validate_by_name")
    )
    keys: list[str] = []
    for name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        if alias:
            keys.append(alias)
        if not alias or by_name:
            keys.append(name)
    return keys


def _unknown_fix(key: str, resolved: _Resolved) -> str:
    fix = "remove it"
    model = resolved.parent_model
    if model is not None:
        close = difflib.get_close_matches(key, _accepted_keys(model), n=1, cutoff=0.6)
        if close:
            fix += f", or did you mean `{close[0]}`?"
        else:
            fix += f" (allowed here: {', '.join(_accepted_keys(model))})"
    return fix


def _missing_fix(key: str, resolved: _Resolved) -> str:
    described = getattr(resolved.field, "description", None)
    return f"add `{key}: …`" + (f" ({described})" if described else "")


_UNIT_FIXES = {
    parse_duration: "write a duration such as 30, 500ms, 900s, 15m or 1h30m",
    parse_size: "write a size such as 4096, 32k, 32KiB or 1MiB",
}


def _value_fix(resolved: _Resolved, kind: str) -> str:
    described = getattr(resolved.field, "description", None)
    if described and resolved.loc and isinstance(resolved.loc[-1], str):
        return f"give `{resolved.loc[-1]}` a valid value: {described}"
    for item in getattr(resolved.field, "metadata", ()):
        func = getattr(item, "func", None)
        if func in _UNIT_FIXES:
            return _UNIT_FIXES[func]
    if kind in ("value_error", "assertion_error"):
        return "correct the value as the message says"
    annotation = resolved.annotation
    if annotation is Any and resolved.field is not None:
        annotation = resolved.field.annotation
    if annotation is not Any and annotation is not None:
        return f"set it to a value of type `{_type_name(annotation)}`"
    return "correct the value"


def _type_name(annotation: Any) -> str:
    plain = _strip_wrappers(annotation)
    if typing.get_origin(plain) is typing.Literal:
        return " | ".join(repr(arg) for arg in typing.get_args(plain))
    if isinstance(plain, type) and not typing.get_args(plain):
        return plain.__name__
    return str(plain).replace("typing.", "")
