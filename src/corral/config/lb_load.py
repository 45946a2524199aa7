"""Load and fully check a `corral lb` configuration: schema first, then what the schema cannot
see (files, certificates, references between sections). Every problem names file, line, key, fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509

from corral.config.errors import ConfigError, Problem
from corral.config.lb import LbConfig
from corral.config.loader import Loaded, load_model
from corral.pki import (
    PkiError,
    check_chain_order,
    check_current,
    check_key_matches,
    load_certificates,
    load_private_key,
)


def load_lb_config(path: str | Path) -> LbConfig:
    """The validated configuration, or ConfigError listing every problem found."""
    loaded = load_model(path, LbConfig)
    problems = [*_reference_problems(loaded), *_listener_problems(loaded), *_tls_problems(loaded)]
    problems += _log_problems(loaded)
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


def _join(specific: str, general: str) -> str:
    return f"{specific}; {general}" if specific else general


_CERT_FIX = "point `cert` at a readable PEM file: the server certificate, then intermediates"
_KEY_FIX = "point `key` at the readable, unencrypted PEM private key of that certificate"
_ORDER_FIX = "reorder the PEM file: server certificate first, then each intermediate after it"
_DATE_FIX = "renew the certificate (or check the machine's clock)"
_MATCH_FIX = "use the key the certificate was issued for (compare `openssl x509 -noout -pubkey`)"
