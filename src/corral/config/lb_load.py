"""Load and fully check a `corral lb` configuration: schema first, then what the schema cannot
see (files, certificates, references between sections). Every problem names file, line, key, fix.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path

from cryptography import x509

from corral.config.errors import ConfigError, Problem
from corral.config.lb import DEFAULT_TLS_GROUPS, HSTS_PRELOAD_MIN_MAX_AGE_S, LbConfig, Server
from corral.config.loader import Loaded, load_model
from corral.pki import (
    PkiError,
    check_chain_order,
    check_current,
    check_key_matches,
    load_certificates,
    load_private_key,
)
from corral.proxy.forwarding import HOP_BY_HOP
from corral.proxy.tls_groups import GroupsUnavailable, unknown_groups


def load_lb_config(path: str | Path) -> LbConfig:
    """The validated configuration, or ConfigError listing every problem found."""
    loaded = load_model(path, LbConfig)
    problems = [*_reference_problems(loaded), *_listener_problems(loaded), *_tls_problems(loaded)]
    problems += _log_problems(loaded)
    problems += [*_tls_option_problems(loaded), *_response_header_problems(loaded)]
    if problems:
        raise ConfigError(problems)
    return loaded.model


def _reference_problems(loaded: Loaded[LbConfig]) -> list[Problem]:
    config = loaded.model
    problems = []
    for i, server in enumerate(config.servers):
        if server.proxy_pass is not None and server.proxy_pass not in config.upstreams:
            known = ", ".join(sorted(config.upstreams)) or "none defined"
            problems.append(
                loaded.problem(
                    ("servers", i, "proxy_pass"),
                    f"upstream {server.proxy_pass!r} is not defined (upstreams: {known})",
                    "name an upstream defined under `upstreams:`, or define this one there",
                )
            )
    return problems


def _listener_problems(loaded: Loaded[LbConfig]) -> list[Problem]:
    config = loaded.model
    problems = []
    seen: dict[tuple[str, int], tuple[int, bool, set[str]]] = {}
    for i, server in enumerate(config.servers):
        address, port = server.address
        tls = server.tls is not None
        first = seen.get((address, port))
        if first is None:
            seen[(address, port)] = (i, tls, set(server.names))
            continue
        first_index, first_tls, names = first
        if first_tls != tls:
            problems.append(
                loaded.problem(
                    ("servers", i, "listen"),
                    f"port {port} is also used by servers[{first_index}] "
                    f"{'with' if first_tls else 'without'} TLS; one port cannot be both",
                    "use another port, or give both servers (or neither) a `tls:` section",
                )
            )
        clash = names.intersection(server.names)
        if clash:
            problems.append(
                loaded.problem(
                    ("servers", i, "server_name"),
                    f"{', '.join(sorted(clash))} is already served on port {port} by "
                    f"servers[{first_index}]",
                    "remove the duplicate server block, or change its server_name",
                )
            )
        names.update(server.names)
    return problems


def _tls_problems(loaded: Loaded[LbConfig]) -> list[Problem]:
    problems = []
    for i, server in enumerate(loaded.model.servers):
        if server.tls is None:
            continue
        for j, item in enumerate(server.tls.certificates):
            where = ("servers", i, "tls", "certificates", j)
            try:
                chain = load_certificates(item.cert)
            except PkiError as exc:
                problems.append(
                    loaded.problem((*where, "cert"), exc.problem, _join(exc.fix, _CERT_FIX))
                )
                chain = []
            key = None
            try:
                key = load_private_key(item.key)
            except PkiError as exc:
                problems.append(
                    loaded.problem((*where, "key"), exc.problem, _join(exc.fix, _KEY_FIX))
                )
            if not chain:
                continue
            in_order = True
            for check, fix in ((_check_order, _ORDER_FIX), (_check_dates, _DATE_FIX)):
                try:
                    check(chain, item.cert)
                except PkiError as exc:
                    in_order = in_order and check is not _check_order
                    problems.append(loaded.problem((*where, "cert"), exc.problem, exc.fix or fix))
            if key is not None and in_order:  # out of order, chain[0] is not the leaf
                try:
                    check_key_matches(chain[0], key, item.cert, key_source=item.key)
                except PkiError as exc:
                    problems.append(
                        loaded.problem((*where, "key"), exc.problem, exc.fix or _MATCH_FIX)
                    )
    return problems


def _check_order(chain: list[x509.Certificate], source: str) -> None:
    check_chain_order(chain, source)


def _check_dates(chain: list[x509.Certificate], source: str) -> None:
    check_current(chain[0], source=source)


def _log_problems(loaded: Loaded[LbConfig]) -> list[Problem]:
    target = loaded.model.access_log
    if target in ("off", "stdout"):
        return []
    directory = Path(target).parent
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        return [
            loaded.problem(
                ("access_log",),
                f"cannot write the access log in {directory} (missing or not writable)",
                'create the directory, or use "stdout" or "off"',
            )
        ]
    return []


def _tls_option_problems(loaded: Loaded[LbConfig]) -> list[Problem]:
    """`tls.groups` names OpenSSL knows, one list per port; `tls.hsts` fit for preloading."""
    problems = []
    first_groups: dict[tuple[str, int], tuple[int, list[str]]] = {}
    for i, server in enumerate(loaded.model.servers):
        tls = server.tls
        if tls is None:
            continue
        where = ("servers", i, "tls")
        problems += _group_problems(loaded, where, tls.groups)
        first = first_groups.setdefault(server.address, (i, tls.groups))
        if [g.lower() for g in first[1]] != [g.lower() for g in tls.groups]:
            problems.append(
                loaded.problem(
                    (*where, "groups"),
                    f"port {server.address[1]} is also served by servers[{first[0]}] with groups "
                    f"{', '.join(first[1])}; a handshake's groups are chosen before the server "
                    "name is known, so one port offers one list",
                    "give every server on this port the same tls.groups (or none: the default)",
                )
            )
        hsts = tls.hsts
        if hsts is not None and hsts.preload:
            if not hsts.include_subdomains:
                problems.append(
                    loaded.problem(
                        (*where, "hsts", "preload"),
                        "the browsers' HSTS preload list requires includeSubDomains",
                        "set `include_subdomains: true`, or remove `preload`",
                    )
                )
            if hsts.max_age < HSTS_PRELOAD_MIN_MAX_AGE_S:
                problems.append(
                    loaded.problem(
                        (*where, "hsts", "max_age"),
                        f"max_age {int(hsts.max_age)} s is below the one year (31536000 s) the "
                        "browsers' HSTS preload list requires",
                        "set `max_age: 365d` or more, or remove `preload`",
                    )
                )
    return problems


def _group_problems(
    loaded: Loaded[LbConfig], where: tuple[str | int, ...], groups: list[str]
) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for j, name in enumerate(groups):
        if name.lower() in seen:
            problems.append(
                loaded.problem(
                    (*where, "groups", j), f"lists {name} twice", "remove the second entry"
                )
            )
        seen.add(name.lower())
    try:
        unknown = unknown_groups(groups)
    except GroupsUnavailable as exc:
        if groups == list(DEFAULT_TLS_GROUPS):
            return problems  # OpenSSL's own default list is used instead (X25519 first too)
        return [*problems, loaded.problem((*where, "groups"), str(exc), _GROUPS_PYTHON_FIX)]
    for name in unknown:
        problems.append(
            loaded.problem(
                (*where, "groups", groups.index(name)),
                f"{ssl.OPENSSL_VERSION} does not know the key-exchange group {name!r}",
                _GROUPS_FIX,
            )
        )
    return problems


# RFC 9110 token characters: what a header field name may contain.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Visible ASCII, space and tab, not starting or ending with whitespace.
_FIELD_VALUE = re.compile(r"[!-~]+(?:[ \t]+[!-~]+)*")
# Names the proxy writes itself for each connection and message (framing, hop-by-hop).
_PROXY_OWNED = HOP_BY_HOP | {b"content-length"}
_STS = "strict-transport-security"


def _response_header_problems(loaded: Loaded[LbConfig]) -> list[Problem]:
    """`add_response_headers` / `hide_response_headers`: valid names and values, none the proxy
    owns, HSTS only through `tls.hsts`."""
    problems = []
    for i, server in enumerate(loaded.model.servers):
        for kind, names in (
            ("add_response_headers", list(server.add_response_headers)),
            ("hide_response_headers", server.hide_response_headers),
        ):
            seen: set[str] = set()
            for j, name in enumerate(names):
                where = ("servers", i, kind, name if kind.startswith("add") else j)
                problem = _name_problem(server, kind, name, seen)
                if problem is not None:
                    problems.append(loaded.problem(where, *problem))
                seen.add(name.lower())
        for name, value in server.add_response_headers.items():
            if not _FIELD_VALUE.fullmatch(value):
                problems.append(
                    loaded.problem(
                        ("servers", i, "add_response_headers", name),
                        f"the value of {name} is empty, has a line break or control character, "
                        "non-ASCII text, or leading/trailing spaces",
                        "write a single-line ASCII value (quote it in YAML)",
                    )
                )
    return problems


def _name_problem(server: Server, kind: str, name: str, seen: set[str]) -> tuple[str, str] | None:
    """(message, fix) when `name` cannot be in `kind` of `server`, else None."""
    lower = name.lower()
    if not _TOKEN.fullmatch(name):
        return (
            f"{name!r} is not a header name",
            "use letters, digits and - (e.g. X-Frame-Options)",
        )
    if lower in seen:
        return f"lists {name} twice (names are case-insensitive)", "keep one of them"
    if lower.encode() in _PROXY_OWNED:
        return (
            f"{name} belongs to the connection or the message framing, which the proxy sets "
            "for each client itself",
            f"remove it from {kind}",
        )
    if kind == "add_response_headers" and lower == _STS:
        if server.tls is None:
            return (
                "Strict-Transport-Security over plain HTTP is ignored by browsers (RFC 6797)",
                "remove it here, and give the TLS server `tls.hsts:` instead",
            )
        if server.tls.hsts is not None:
            return "Strict-Transport-Security is already sent by `tls.hsts`", "remove it here"
        return (
            "Strict-Transport-Security is set with `tls.hsts`",
            "remove it here and write `tls: {hsts: {max_age: 365d}}` (see docs/lb.md)",
        )
    return None


_GROUPS_FIX = (
    "use group names OpenSSL knows, most preferred first, e.g. [X25519, P-256, P-384] "
    "(also X448, P-521, ffdhe2048; `openssl ecparam -list_curves` lists the curve names)"
)
_GROUPS_PYTHON_FIX = (
    "run corral lb on CPython, or leave tls.groups out (OpenSSL's default list, X25519 first)"
)


def _join(specific: str, general: str) -> str:
    return f"{specific}; {general}" if specific else general


_CERT_FIX = "point `cert` at a readable PEM file: the server certificate, then intermediates"
_KEY_FIX = "point `key` at the readable, unencrypted PEM private key of that certificate"
_ORDER_FIX = "reorder the PEM file: server certificate first, then each intermediate after it"
_DATE_FIX = "renew the certificate (or check the machine's clock)"
_MATCH_FIX = "use the key the certificate was issued for (compare `openssl x509 -noout -pubkey`)"
