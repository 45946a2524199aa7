"""Which store `corral server` runs on, from its flags: the embedded SQLite store in the data
directory, or (with `--etcd-servers`) an etcd cluster shared by every server of an HA install.

The `--etcd-*` flags are checked before anything connects (URLs, which files belong together,
that the PEM files parse and the key matches the certificate); a failed connection is translated
into a message naming the flag to change and how (`StoreStartError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from corral import pki
from corral.store import open_store
from corral.store.base import Store, StoreError, StoreUnavailable

T = TypeVar("T")

DEFAULT_ETCD_PREFIX = "/corral-ha"
DIAL_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 5.0
SERVERS_FLAG = "--etcd-servers / CORRAL_ETCD_SERVERS"
CAFILE_FLAG = "--etcd-cafile / CORRAL_ETCD_CAFILE"
CERTFILE_FLAG = "--etcd-certfile / CORRAL_ETCD_CERTFILE"
KEYFILE_FLAG = "--etcd-keyfile / CORRAL_ETCD_KEYFILE"
PREFIX_FLAG = "--etcd-prefix / CORRAL_ETCD_PREFIX"
#: EtcdOptions field named by the etcd backend's configuration errors → our flag
FLAG_OF_OPTION = {"endpoints": SERVERS_FLAG, "cafile": CAFILE_FLAG, "certfile": CERTFILE_FLAG,
                  "keyfile": KEYFILE_FLAG, "prefix": PREFIX_FLAG}


class StoreStartError(Exception):
    """The store cannot be used; the message names the flag and the fix."""


@dataclass(frozen=True)
class EtcdFlags:
    """The `--etcd-*` flags as given (`servers` empty: no etcd, the embedded store)."""

    servers: str = ""
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    prefix: str = DEFAULT_ETCD_PREFIX

    @property
    def enabled(self) -> bool:
        """True when the store is etcd."""
        return bool(self.servers.strip())


@dataclass(frozen=True)
class EtcdPlan:
    """Checked `--etcd-*` values, ready to connect."""

    endpoints: tuple[str, ...]
    cafile: Path | None
    certfile: Path | None
    keyfile: Path | None
    prefix: str


def parse_endpoints(servers: str) -> tuple[str, ...]:
    """The comma-separated client URLs of `--etcd-servers`, each `http(s)://host:port`."""
    endpoints: list[str] = []
    for raw in servers.split(","):
        url = raw.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("https", "http") or not parts.hostname or port is None or (
            parts.path or parts.query or parts.username
        ):
            raise StoreStartError(
                f"{SERVERS_FLAG}: {raw.strip()!r} is not an etcd client URL: give each member "
                "as https://host:2379, comma-separated (for example "
                "https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379)"
            )
        if url not in endpoints:
            endpoints.append(url)
    if not endpoints:
        raise StoreStartError(f"{SERVERS_FLAG} is empty: give the etcd members' client URLs")
    return tuple(endpoints)


def _check_pem(path: Path, flag: str, load: Callable[[], T]) -> T:
    """`load()` of a PEM file named by `flag`; its problem as a StoreStartError naming it."""
    if not path.is_file():
        raise StoreStartError(f"{flag}: {path} does not exist or is not a file: give the path "
                              "of the PEM file")
    try:
        return load()
    except pki.PkiError as exc:
        raise StoreStartError(f"{flag}: {exc}") from None


def check_etcd_flags(flags: EtcdFlags) -> EtcdPlan | None:
    """The checked plan for `flags`, None for the embedded store; StoreStartError names the
    flag at fault and the fix."""
    given = [flag for flag, value in ((CAFILE_FLAG, flags.cafile), (CERTFILE_FLAG, flags.certfile),
                                      (KEYFILE_FLAG, flags.keyfile)) if value is not None]
    if not flags.enabled:
        if given:
            raise StoreStartError(
                f"{given[0].split(' /')[0]} is given without --etcd-servers: add --etcd-servers "
                "(the etcd members' client URLs) or remove the --etcd-* flags to use the "
                "embedded store"
            )
        return None
    endpoints = parse_endpoints(flags.servers)
    prefix = flags.prefix.strip().rstrip("/")
    if not prefix.startswith("/") or any(c.isspace() for c in prefix):
        raise StoreStartError(f"{PREFIX_FLAG}: {flags.prefix!r} is not a key prefix: use a path "
                              f"such as {DEFAULT_ETCD_PREFIX} (every server of one install alike)")
    if (flags.certfile is None) != (flags.keyfile is None):
        missing, present = ((KEYFILE_FLAG, CERTFILE_FLAG) if flags.keyfile is None
                            else (CERTFILE_FLAG, KEYFILE_FLAG))
        raise StoreStartError(f"{present.split(' /')[0]} is given without "
                              f"{missing.split(' /')[0]}: etcd's mutual TLS needs both the "
                              "client certificate and its key")
    cafile, certfile, keyfile = flags.cafile, flags.certfile, flags.keyfile
    if cafile is not None:
        _check_pem(cafile, CAFILE_FLAG, lambda: pki.load_certificates(cafile))
    if certfile is not None and keyfile is not None:
        cert = _check_pem(certfile, CERTFILE_FLAG, lambda: pki.load_certificates(certfile)[0])
        key = _check_pem(keyfile, KEYFILE_FLAG, lambda: pki.load_private_key(keyfile))
        _check_pem(keyfile, KEYFILE_FLAG, lambda: pki.check_key_matches(
            cert, key, str(certfile), key_source=str(keyfile)))
    return EtcdPlan(endpoints, cafile, certfile, keyfile, prefix or DEFAULT_ETCD_PREFIX)


async def open_server_store(data_dir: Path, plan: EtcdPlan | None) -> Store:
    """The server's store: etcd for a plan, else the embedded store in `data_dir` (its file
    named by the backend)."""
    if plan is None:
        try:
            return await asyncio.to_thread(open_store, data_dir)
        except (StoreError, OSError, ValueError) as exc:
            raise StoreStartError(str(exc)) from None
    return await connect(plan)


async def connect(plan: EtcdPlan) -> Store:
    """Connect to the etcd cluster of `plan`; a failure becomes a StoreStartError naming the
    flag to fix."""
    from corral.store.etcd import EtcdOptions, connect_etcd

    options = EtcdOptions(
        endpoints=plan.endpoints,
        cafile=plan.cafile,
        certfile=plan.certfile,
        keyfile=plan.keyfile,
        prefix=plan.prefix,
        dial_timeout=DIAL_TIMEOUT_SECONDS,
        request_timeout=REQUEST_TIMEOUT_SECONDS,
    )
    try:
        return await connect_etcd(options)
    except StoreError as exc:
        raise StoreStartError(explain_connect_error(plan, exc)) from None


def explain_connect_error(plan: EtcdPlan, exc: Exception) -> str:
    """A start-up message for a failed etcd connection: the flag to change, then what the
    backend found and how to fix it."""
    flag = FLAG_OF_OPTION.get(str(getattr(exc, "option", "")))
    if flag is not None:
        return f"{flag}: {exc}"
    if isinstance(exc, StoreUnavailable):
        return (f"{SERVERS_FLAG}: {exc}; give every member's client URL (https://host:2379) "
                "and check that etcd runs there")
    return f"etcd ({', '.join(plan.endpoints)}): {exc}"
