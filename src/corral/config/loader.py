"""Load a YAML file into a pydantic model; every error names file, line, key and the fix.

PyYAML's composed node tree keeps the line of every key and list item, so a pydantic error
location such as ``("servers", 0, "tls", "cert")`` maps back to the line the user must edit.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pydantic
import yaml
from pydantic_core import ErrorDetails

from corral.config.errors import ConfigError, Problem, format_loc
from corral.config.units import parse_duration, parse_size

M = TypeVar("M", bound=pydantic.BaseModel)
Loc = tuple[str | int, ...]

SECRET_KEY = re.compile(r"password|token|secret|key", re.IGNORECASE)
HIDDEN = "(value hidden)"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Loaded(Generic[M]):
    """A validated model plus the YAML node tree it came from, for pointing at lines later."""

    def __init__(self, model: M, path: Path, root: yaml.Node | None, source: str) -> None:
        self.model = model
        self.path = path
        self._root = root
        self._source = source

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of that key or list item; the nearest existing parent's if absent."""
        return line_of(self._root, loc)

    def problem(self, loc: Loc, message: str, fix: str) -> Problem:
        """Build a Problem pointing at ``loc`` in this file (for checks made after validation)."""
        return Problem(self._source, self.line_of(loc), format_loc(loc), message, fix)


def load_model(path: str | Path, model: type[M]) -> Loaded[M]:
    """Read, parse and validate ``path``; raise ConfigError listing every problem."""
    source = str(path)
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise _one(source, "file not found", "check the path, or create the file") from None
    except IsADirectoryError:
        raise _one(source, "is a directory, not a file", "give the path of a YAML file") from None
    except PermissionError:
        raise _one(
            source, "permission denied reading the file", "make it readable by this user"
        ) from None
    except OSError as exc:
        raise _one(source, f"cannot read the file: {exc.strerror}", "check the path") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _one(
            source, f"not UTF-8 text (bad byte at offset {exc.start})", "save the file as UTF-8"
        ) from None
    return parse_model(text, model, source=source)


def parse_model(text: str, model: type[M], *, source: str) -> Loaded[M]:
    """Parse and validate YAML ``text``; ``source`` names it in problems."""
    root, data = _compose_and_construct(text, source)
    problems = list(_duplicate_keys(root, source))
    try:
        instance = model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems += _validation_problems(exc, model, root, source)
        raise ConfigError(sorted(problems, key=_line_order)) from None
    if problems:
        raise ConfigError(problems)
    return Loaded(instance, Path(source), root, source)


def _one(source: str, message: str, fix: str, line: int | None = None) -> ConfigError:
    return ConfigError([Problem(source, line, "", message, fix)])


def _line_order(problem: Problem) -> int:
    return problem.line if problem.line is not None else 0


def _compose_and_construct(text: str, source: str) -> tuple[yaml.Node, dict[Any, Any]]:
    """Return the node tree and the plain data built from it, or raise ConfigError."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        # construction flattens `<<` merges in place: build from a copy, keep the tree as written
        data = loader.construct_document(copy.deepcopy(root)) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _one(
            source,
            f"YAML syntax error: {_yaml_message(exc)}",
            _yaml_fix(exc),
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise _one(source, f"YAML error: {exc}", "fix the YAML syntax") from None
    finally:
        loader.dispose()
    if root is None or data is None:
        raise _one(source, "the file is empty", "write the configuration (see examples/)")
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise _one(
            source,
            "the top level must be a mapping of keys to values",
            "start the file with `key: value` lines, not a list or a single value",
            line=root.start_mark.line + 1,
        )
    return root, data


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    message = exc.problem or "invalid YAML"
    if "another document" in message:
        return "the file holds more than one YAML document"
    if exc.context:
        at = f" at line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
        message += f" ({exc.context}{at})"
    return message


def _yaml_fix(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or ""
    if "'\\t'" in problem:
        return "indent with spaces, not tabs"
    if "another document" in problem:
        return "keep a single document: remove this `---` and what follows, or merge them"
    if "constructor for the tag" in problem:
        return "remove the `!!` tag: only plain YAML values are accepted"
    return "fix the YAML syntax here (indentation, quotes, brackets, a missing ':')"


# ---------------------------------------------------------------- node tree: lines and duplicates


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """Key/value node pairs, explicit keys first, then keys brought in by ``<<`` merges."""
    merges: list[yaml.Node] = []
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            merges.append(value)
        else:
            yield key, value
    for merged in merges:
        sources = merged.value if isinstance(merged, yaml.SequenceNode) else [merged]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                yield from _pairs(source)


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key node, value node) for ``part`` under ``node``; for a list item both are the item."""
    if isinstance(node, yaml.MappingNode):
        for key, value in _pairs(node):
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        items: list[yaml.Node] = node.value
        if 0 <= part < len(items):
            return items[part], items[part]
    return None


def line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of ``loc`` in the tree under ``root``; the nearest existing parent if absent."""
    if root is None:
        return None
    line = root.start_mark.line + 1
    node = root
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        key, node = found
        line = key.start_mark.line + 1
    return line


def _duplicate_keys(root: yaml.Node, source: str) -> Iterator[Problem]:
    """Problems for keys written twice in one mapping (PyYAML would silently keep the last)."""
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, loc: Loc) -> Iterator[Problem]:
        if id(node) in seen_nodes:  # an alias reuses a node: check it once
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG or not isinstance(key, yaml.ScalarNode):
                    continue
                line = key.start_mark.line + 1
                if key.value in first_line:
                    yield Problem(
                        source,
                        line,
                        format_loc((*loc, key.value)),
                        f"duplicate key `{key.value}`: first at line {first_line[key.value]}, "
                        f"again at line {line}",
                        "keep only one of them (YAML would silently use the last)",
                    )
                else:
                    first_line[key.value] = line
                yield from walk(value, (*loc, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                yield from walk(item, (*loc, index))

    yield from walk(root, ())


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


def _validation_problems(
    exc: pydantic.ValidationError, model: type[pydantic.BaseModel], root: yaml.Node, source: str
) -> list[Problem]:
    errors = [(err, _resolve(model, err["loc"])) for err in exc.errors()]
    kept = _choose_union_members(errors)
    problems: list[Problem] = []
    merged: dict[Loc, list[tuple[ErrorDetails, _Resolved]]] = {}
    for err, resolved in kept:
        if resolved.union_points and resolved.union_points[-1][0] == resolved.loc:
            merged.setdefault(resolved.loc, []).append((err, resolved))  # scalar union: merge
        else:
            problems.append(_problem(err, resolved, root, source))
    for group in merged.values():
        problems.append(_merged_problem(group, root, source))
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


def _problem(err: ErrorDetails, resolved: _Resolved, root: yaml.Node, source: str) -> Problem:
    loc = resolved.loc
    key = str(loc[-1]) if loc else ""
    line = line_of(root, loc)
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
    return Problem(source, line, format_loc(loc), message, _value_fix(resolved, kind))


def _got(err: ErrorDetails, message: str) -> str:
    """`` (got …)`` naming the input; only the kind for containers (they may hold secrets)."""
    value = err.get("input")
    if isinstance(value, dict):
        return " (got a mapping)"
    if isinstance(value, list):
        return " (got a list)"
    return "" if repr(value) in message else f" (got {_shown(value)})"


def _merged_problem(
    group: list[tuple[ErrorDetails, _Resolved]], root: yaml.Node, source: str
) -> Problem:
    err, resolved = group[0]
    messages = list(dict.fromkeys(_plain(item["msg"]) for item, _ in group))
    message = "; or ".join(messages)
    if _is_secret(resolved.loc):
        message = f"{_hide(message, err.get('input'))} {HIDDEN}"
    else:
        message += _got(err, message)
    line = line_of(root, resolved.loc)
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
