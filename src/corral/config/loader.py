"""Load a YAML file into a pydantic model; every error names file, line, key and the fix.

PyYAML's composed node tree keeps the line of every key and list item, so a pydantic error
location such as ``("servers", 0, "tls", "cert")`` maps back to the line the user must edit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import pydantic
import yaml

from corral.config.errors import ConfigError, Loc, Problem, format_loc, validation_problems

M = TypeVar("M", bound=pydantic.BaseModel)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Loaded(Generic[M]):
    """A validated model plus the YAML node tree it came from, for pointing at lines later."""

    def __init__(self, model: M, path: Path, root: yaml.Node | None, source: str) -> None:
        self.model = model
        self.path = path
        self._root = root
        self.source = source
        """The file name as given by the caller, used in every Problem."""

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of that key or list item; the nearest existing parent's if absent."""
        return line_of(self._root, loc)

    def problem(self, loc: Loc, message: str, fix: str) -> Problem:
        """Build a Problem pointing at ``loc`` in this file (for checks made after validation)."""
        return Problem(self.source, self.line_of(loc), format_loc(loc), message, fix)


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
        problems += validation_problems(
            exc, model, source=source, line_of=lambda loc: line_of(root, loc)
        )
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
