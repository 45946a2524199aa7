"""The Kubernetes YAML of `addons` (a string in the cluster file) and `addons_include` (files):
split into documents, each parsed by the config loader with its real line numbers, and the
objects of Rancher's templates picked out as typed models.

Lines: the text of `addons: |-` is the block's lines with their indentation removed, so line k of
the string is line `first_line + k` of the cluster file. Each document is handed to the loader
preceded by that many empty lines: every line the loader reports is the cluster file's own.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
import yaml
from pydantic import BaseModel, RootModel

from corral.config.errors import ConfigError, Loc, Problem, format_loc, validation_problems
from corral.config.loader import line_of, parse_model
from corral.install.k8s import DEPLOYMENT, INGRESS, Head
from corral.install.placeholders import tab_problems

_DOC_START = re.compile(r"^---(?=\s|$)")
_DOC_END = re.compile(r"^\.\.\.(?=\s|$)")
_BASE64_LINE = re.compile(r"^\s*[A-Za-z0-9+/]{4,}={0,2}\s*$")
_BASE64_VALUE = re.compile(r"^\s*([\w.-]+):\s*[A-Za-z0-9+/]{40,}={0,2}\s*$")


class _Raw(RootModel[dict[str, Any]]):
    """Any mapping: the shape of a Kubernetes object is checked per kind (`corral.install.k8s`)."""


@dataclass(frozen=True)
class Document:
    """One Kubernetes object of the addons, with the node tree that gives its lines."""

    source: str  # the file that holds it (the cluster file, or an addons_include file)
    where: str  # "addons" or "addons_include[0]"
    number: int  # 1-based position among the documents of `where`
    root: yaml.Node
    data: dict[str, Any]
    head: Head

    @property
    def label(self) -> str:
        """`Kind/name` as kubectl prints it, or `document N` when kind or name is missing."""
        if self.head.kind and self.head.metadata.name:
            return f"{self.head.kind}/{self.head.metadata.name}"
        return f"document {self.number}"

    @property
    def line(self) -> int:
        """The line where the object starts."""
        return self.root.start_mark.line + 1

    def line_of(self, loc: Loc) -> int | None:
        """The line of a key inside the object."""
        return line_of(self.root, loc)

    def key(self, loc: Loc) -> str:
        """The key as problems show it: `addons[Secret/cattle-keys-server].data.cacerts.pem`."""
        inner = format_loc(loc)
        return f"{self.where}[{self.label}]" + (f".{inner}" if inner else "")

    def problem(self, loc: Loc, message: str, fix: str) -> Problem:
        """A problem at `loc` in this object."""
        return Problem(self.source, self.line_of(loc), self.key(loc), message, fix)


M = TypeVar("M", bound=BaseModel)


def typed(doc: Document, model: type[M]) -> tuple[M | None, list[Problem]]:
    """The object as `model`, or None and its problems (real lines, keys under the object)."""
    try:
        return model.model_validate(doc.data), []
    except pydantic.ValidationError as exc:
        problems = validation_problems(exc, model, source=doc.source, line_of=doc.line_of)
        return None, [_under(doc, problem) for problem in problems]


@dataclass
class Findings:
    """Errors and warnings found so far, and the objects something refers to."""

    errors: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    used: set[str] = dataclasses.field(default_factory=set)  # labels of referenced objects

    def typed_object(self, doc: Document, model: type[M]) -> M | None:
        """The object as `model`; its problems go to the errors."""
        obj, problems = typed(doc, model)
        self.errors += problems
        return obj


def _under(doc: Document, problem: Problem) -> Problem:
    inner = problem.key
    key = f"{doc.where}[{doc.label}]" + (f".{inner}" if inner else "")
    return dataclasses.replace(problem, key=key)


def read_documents(
    text: str, *, source: str, first_line: int, where: str
) -> tuple[list[Document], list[Problem]]:
    """Every object in `text` (YAML documents separated by `---`), and the problems found.

    `first_line` is the 1-based line of `source` that holds the first line of `text`.
    """
    documents: list[Document] = []
    problems: list[Problem] = []
    lines = text.split("\n")
    number = 0
    for start, chunk in _chunks(lines):
        if not _has_content(chunk):
            continue
        number += 1
        ended = "\n" if start + len(chunk) < len(lines) else ""  # the break before a marker
        padded = "\n" * (first_line - 1 + start) + "\n".join(chunk) + ended
        try:
            loaded = parse_model(padded, _Raw, source=source)
        except ConfigError as exc:
            fallback = f"{where}[document {number}]"
            tabs = tab_problems("\n".join(chunk), source, first_line + start)
            if {p.line for p in tabs} & {p.line for p in exc.problems}:
                problems += [_keyed(problem, fallback) for problem in tabs]
                continue
            for problem in exc.problems:
                better = _syntax_hint(problem, lines, first_line)
                problems.append(better or _keyed(problem, fallback))
            continue
        data = loaded.model.root
        root = yaml.compose(padded, Loader=yaml.SafeLoader)
        assert root is not None  # the loader has parsed it: a non-empty mapping
        head, head_problems = _head(data, root, source, where, number)
        problems += head_problems
        documents.append(Document(source, where, number, root, data, head))
    return documents, problems


def _chunks(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(index of the first line, lines) of each document; markers blanked, lines kept."""
    start, current = 0, list[str]()
    for index, line in enumerate(lines):
        if _DOC_START.match(line):
            yield start, current
            start, current = index, ["   " + line[3:]]
        elif _DOC_END.match(line):
            yield start, current
            start, current = index + 1, []
        else:
            current.append(line)
    yield start, current


def _has_content(chunk: list[str]) -> bool:
    return any(line.strip() and not line.strip().startswith("#") for line in chunk)


def _keyed(problem: Problem, fallback: str) -> Problem:
    key = f"{fallback}.{problem.key}" if problem.key else fallback
    return dataclasses.replace(problem, key=key)


def _syntax_hint(problem: Problem, lines: list[str], first_line: int) -> Problem | None:
    """A YAML syntax error just after a `name: <base64>` line is base64 split over lines."""
    if not problem.message.startswith("YAML syntax error") or problem.line is None:
        return None
    at = min(problem.line - first_line, len(lines) - 1)  # index into `lines`
    for index in range(at, max(at - 3, 0), -1):
        if not _BASE64_LINE.match(lines[index]):
            continue
        while index > 1 and _BASE64_LINE.match(lines[index - 1]):
            index -= 1
        previous = _BASE64_VALUE.match(lines[index - 1])
        if previous is None:
            return None
        name = previous.group(1)
        return Problem(
            problem.file,
            first_line + index,
            name,
            f"the base64 of `{name}` goes on over line {first_line + index}: it must be on "
            "one line (Rancher's HA guide: on the same line as the key, without any newline at "
            "the beginning, in between or at the end)",
            "encode with `base64 -w0 FILE` and paste the single line after the key",
        )
    return None


def _head(
    data: dict[str, Any], root: yaml.Node, source: str, where: str, number: int
) -> tuple[Head, list[Problem]]:
    label = f"{where}[document {number}]"
    try:
        head = Head.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = validation_problems(
            exc, Head, source=source, line_of=lambda loc: line_of(root, loc)
        )
        return Head(), [_keyed(problem, label) for problem in problems]
    problems = []
    for key, fix in (
        ("apiVersion", "add `apiVersion:` (v1 for a Secret or Service)"),
        ("kind", "add `kind:` (Secret, Service, Ingress, Deployment, …)"),
    ):
        if not data.get(key):
            problems.append(
                Problem(source, root.start_mark.line + 1, label, f"`{key}` is missing", fix)
            )
    if not head.metadata.name:
        problems.append(
            Problem(
                source, line_of(root, ("metadata",)), f"{label}.metadata.name",
                "`metadata.name` is missing", "name the object (`metadata: {name: …}`)",
            )
        )
    return head, problems


@dataclass
class RancherObjects:
    """The objects of Rancher's template that Corral reads, and those it ignores."""

    secrets: dict[str, Document] = dataclasses.field(default_factory=dict)
    services: dict[str, Document] = dataclasses.field(default_factory=dict)
    ingress: Document | None = None
    deployment: Document | None = None
    ignored: list[Document] = dataclasses.field(default_factory=list)


def pick(documents: list[Document]) -> tuple[RancherObjects, list[Problem]]:
    """Sort the objects: Secrets and Services by name (the Ingress and Deployment refer to them
    by name), the Ingress `cattle-ingress-http`, the Deployment `cattle`; the rest is ignored.
    The same object written twice is a problem."""
    found = RancherObjects()
    problems: list[Problem] = []
    for doc in documents:
        kind, name = doc.head.kind, doc.head.metadata.name
        if kind == "Secret":
            first = found.secrets.setdefault(name, doc)
        elif kind == "Service":
            first = found.services.setdefault(name, doc)
        elif kind == "Ingress" and name == INGRESS:
            first = found.ingress = found.ingress or doc
        elif kind == "Deployment" and name == DEPLOYMENT:
            first = found.deployment = found.deployment or doc
        else:
            found.ignored.append(doc)
            continue
        if first is not doc:
            problems.append(
                doc.problem(
                    (),
                    f"{doc.label} is defined twice (first at {first.source}:{first.line})",
                    "keep one of them",
                )
            )
    return found, problems


def ignored_note(found: RancherObjects, source: str, line: int | None) -> Problem | None:
    """ONE note naming every object that has no meaning for Corral (a warning)."""
    if not found.ignored:
        return None
    names = ", ".join(
        f"{doc.label} (line {doc.line})" if doc.source == source
        else f"{doc.label} ({doc.source}:{doc.line})"
        for doc in found.ignored
    )
    return Problem(
        source, line, "addons",
        f"ignored, no meaning for Corral ({len(found.ignored)} objects): {names}",
        "",
    )
