"""Placeholders of Rancher's templates and HA guide left in a cluster file, and lines indented
with tabs (the guide's own `nodes` snippet is): text-level checks with a precise line each."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import yaml

from corral.config.errors import Loc, Problem

_ADDRESS = "replace it with the node's IP address or hostname"
_FQDN = (
    "replace it with the name clients reach Rancher by (a DNS A record pointing at the load "
    "balancer)"
)

# (pattern, whole value only, fix): the templates' `<IP>`, `<USER>`, `<PEM_FILE>`, `<FQDN>`,
# `<BASE64_CA>`, the sibling template's `<BASE64_CRT>`/`<BASE64_KEY>`, the guide's
# `IP_ADDRESS_1`…, `USER` and `HOSTNAME.DOMAIN.COM`, a later template's `your_proxy_address`
PLACEHOLDERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<IP(?:_ADDRESS_(?:\d+|X))?>"), _ADDRESS),
    (re.compile(r"\bIP_ADDRESS_(?:\d+|X)\b"), _ADDRESS),
    (re.compile(r"<USER>|^USER$"), "replace it with the SSH user of the node (usually root)"),
    (re.compile(r"<PEM_FILE>"), "replace it with the path of the SSH private key (~/.ssh/id_rsa)"),
    (re.compile(r"<FQDN>|^HOSTNAME\.DOMAIN\.COM$"), _FQDN),
    (
        re.compile(r"<BASE64_CA>"),
        "replace it with the output of `base64 -w0 ca.pem` (the CA that signed the load "
        "balancer's certificate), on one line",
    ),
    (
        re.compile(r"<BASE64_CRT>"),
        "replace it with the output of `base64 -w0 cert.pem` (the certificate, then "
        "intermediates), on one line",
    ),
    (
        re.compile(r"<BASE64_KEY>"),
        "replace it with the output of `base64 -w0 key.pem`, on one line",
    ),
    (re.compile(r"your_proxy_address"), "replace it with your proxy's address and port"),
    (re.compile(r"<[A-Z][A-Z0-9_]*>"), "replace the placeholder with your value"),
)


def placeholder_in(value: object) -> str | None:
    """The first template placeholder in `value` (a string), else None."""
    if not isinstance(value, str):
        return None
    for pattern, _ in PLACEHOLDERS:
        match = pattern.search(value)
        if match:
            return match.group(0)
    return None


def _fix_for(placeholder: str) -> str:
    for pattern, fix in PLACEHOLDERS:
        if pattern.search(placeholder):
            return fix
    return "replace the placeholder with your value"  # pragma: no cover - every match has one


def scalars(node: yaml.Node, loc: Loc = ()) -> Iterator[tuple[Loc, yaml.ScalarNode]]:
    """Every scalar value under `node` with its key path (mapping keys are not values)."""
    if isinstance(node, yaml.ScalarNode):
        yield loc, node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            part = key.value if isinstance(key, yaml.ScalarNode) else "?"
            yield from scalars(value, (*loc, part))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from scalars(item, (*loc, index))


def placeholder_problems(
    root: yaml.Node, source: str, key_of: Callable[[Loc], str], skip: Loc | None = None
) -> list[Problem]:
    """One problem per unreplaced placeholder under `root` (the subtree at `skip` excluded)."""
    problems = []
    for loc, node in scalars(root):
        if skip is not None and loc[: len(skip)] == skip:
            continue
        found = placeholder_in(node.value)
        if found is not None:
            problems.append(
                Problem(
                    source, node.start_mark.line + 1, key_of(loc),
                    f"the template's placeholder `{found}` is not replaced", _fix_for(found),
                )
            )
    return problems


def tab_problems(text: str, source: str, first_line: int = 1) -> list[Problem]:
    """One problem per line of `text` indented with a tab (YAML allows only spaces)."""
    problems = []
    for index, line in enumerate(text.split("\n")):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(
                Problem(
                    source, first_line + index, "",
                    "this line is indented with a tab, and YAML allows only spaces (the `nodes` "
                    "snippet of Rancher's HA guide is indented with tabs)",
                    "replace the tab with spaces, so the key lines up with the keys above it",
                )
            )
    return problems
