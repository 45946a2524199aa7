"""What a Kubernetes client asks for: the `Accept` media types (an object or a `Table`) and
the list query's `labelSelector` / `fieldSelector`. Pure functions on the header and query text.

kubectl asks `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;
v=v1beta1;g=meta.k8s.io,application/json` for what it prints and `application/json` for `-o json`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from corral.server.api.k8s.render import TableVersion

Representation = Literal["object", "table-v1", "table-v1beta1"]
TABLE_GROUP = "meta.k8s.io"
_JSON_TYPES = frozenset({"application/json", "application/*", "*/*"})
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^(?:[A-Za-z0-9.-]{{1,253}}/)?{_NAME}$")  # [prefix/]name
_LABEL_VALUE = re.compile(rf"^(?:{_NAME})?$")


class NotAcceptable(ValueError):
    """None of the Accept media types can be served (406)."""


class BadSelector(ValueError):
    """A selector this server cannot parse or does not support (400)."""


def representation(accept: str | None) -> Representation:
    """The first media type in `accept` this server can produce: a Table (`as=Table` in group
    meta.k8s.io, version v1 or v1beta1) or the object as JSON; NotAcceptable if none."""
    if accept is None or not accept.strip():
        return "object"
    for item in accept.split(","):
        media, *raw_params = (part.strip() for part in item.split(";"))
        params = dict(_param(p) for p in raw_params if "=" in p)
        media = media.lower()
        if media not in _JSON_TYPES:
            continue
        kind = params.get("as")
        if kind is None:
            return "object"
        if kind == "Table" and params.get("g") == TABLE_GROUP:
            version = params.get("v")
            if version == "v1":
                return "table-v1"
            if version == "v1beta1":
                return "table-v1beta1"
    raise NotAcceptable(
        f"only application/json and the {TABLE_GROUP} Table (v1, v1beta1) are served, not {accept}"
    )


def table_version(kind: Representation) -> TableVersion:
    """The meta.k8s.io version of a Table representation."""
    return "v1beta1" if kind == "table-v1beta1" else "v1"


def _param(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name.strip().lower(), value.strip().strip('"')


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector: `key`, `!key`, `key=value`, `key==value`, `key!=value`."""

    key: str
    operator: Literal["exists", "not-exists", "equals", "not-equals"]
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this term."""
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "not-exists":
            return self.key not in labels
        if self.operator == "equals":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


def label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate for an equality-based label selector (`a=b,c!=d,e,!f`); BadSelector for
    set-based terms (`in`, `notin`) and malformed ones."""
    if text is None or not text.strip():
        return lambda labels: True
    terms = [_requirement(term.strip()) for term in text.split(",")]
    return lambda labels: all(term.matches(labels) for term in terms)


def _requirement(term: str) -> Requirement:
    if re.search(r"\s(?:in|notin)\s*\(", f" {term}"):
        raise BadSelector(f"set-based selector {term!r} is not supported: use key=value terms")
    for token, operator in (("!=", "not-equals"), ("==", "equals"), ("=", "equals")):
        if token in term:
            key, _, value = term.partition(token)
            key, value = key.strip(), value.strip()
            _check_key(key, term)
            if not _LABEL_VALUE.match(value):
                raise BadSelector(f"invalid label value in selector term {term!r}")
            return Requirement(key, operator, value)  # type: ignore[arg-type]
    if term.startswith("!"):
        key = term[1:].strip()
        _check_key(key, term)
        return Requirement(key, "not-exists")
    _check_key(term, term)
    return Requirement(term, "exists")


def _check_key(key: str, term: str) -> None:
    if not _LABEL_KEY.match(key):
        raise BadSelector(f"invalid label key in selector term {term!r}")


def name_selector(text: str | None) -> Callable[[str], bool]:
    """A predicate on the node name for a field selector: `metadata.name=x` /
    `metadata.name!=x` terms (the only field nodes can be selected by here)."""
    if text is None or not text.strip():
        return lambda name: True
    terms: list[tuple[str, bool]] = []  # (name, must equal)
    for raw in text.split(","):
        term = raw.strip()
        for token, equal in (("!=", False), ("==", True), ("=", True)):
            if token in term:
                field, _, value = term.partition(token)
                if field.strip() != "metadata.name":
                    raise BadSelector(
                        f"field label not supported: {field.strip()} (only metadata.name)"
                    )
                terms.append((value.strip(), equal))
                break
        else:
            raise BadSelector(f"invalid field selector term {term!r} (use metadata.name=NAME)")
    return lambda name: all((name == wanted) is equal for wanted, equal in terms)
