"""Which backend a store URL names: a small registry of backends instead of an if-chain.

Each backend has a URL scheme, an example for error messages, and either a synchronous `open`
(memory, sqlite) or only an asynchronous `connect` (etcd, which must reach its cluster first).
`open_url` serves the synchronous ones; `connect_url` serves every backend. A plain filesystem
path (no `scheme://`) means sqlite.

    memory://
    sqlite:///abs/path/store.db                  (or a path; a directory holds store.db)
    etcd://10.0.0.1:2379,10.0.0.2:2379/?cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&prefix=/corral
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from corral.store.base import Store

Opener = Callable[[str, int], Store]
Connector = Callable[[str, int], Awaitable[Store]]


@dataclass(frozen=True)
class Backend:
    """A store backend: its scheme, an example URL, and how to open or connect to it."""

    scheme: str
    example: str
    open: Opener | None = None
    connect: Connector | None = None


_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> None:
    """Add (or replace) the backend for `backend.scheme`."""
    if backend.open is None and backend.connect is None:
        raise ValueError(f"store backend {backend.scheme!r} can neither open nor connect")
    _BACKENDS[backend.scheme] = backend


def backends() -> tuple[Backend, ...]:
    """Every registered backend, in registration order."""
    return tuple(_BACKENDS.values())


def _examples() -> str:
    return ", ".join(b.example for b in _BACKENDS.values())


def backend_for(url: str) -> Backend:
    """The backend of `url` (sqlite for a plain path); ValueError for an unknown scheme."""
    if "://" not in url:
        scheme = "memory" if url == "memory:" else "sqlite"
    else:
        scheme = url.split("://", 1)[0]
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ValueError(f"store URL {url!r}: unknown scheme; use one of {_examples()}")
    return backend


def open_url(url: str | Path, history: int) -> Store:
    """A store of a backend that opens synchronously; ValueError for the others."""
    text = str(url)
    backend = backend_for(text)
    if backend.open is None:
        ready = ", ".join(b.example for b in _BACKENDS.values() if b.open is not None)
        raise ValueError(
            f"store URL {text!r}: the {backend.scheme} backend must connect first; use "
            f"`await connect_store(url)` (open_store serves {ready})"
        )
    return backend.open(text, history)


async def connect_url(url: str | Path, history: int) -> Store:
    """A store of any backend (synchronous openers run in a thread)."""
    text = str(url)
    backend = backend_for(text)
    if backend.connect is not None:
        return await backend.connect(text, history)
    assert backend.open is not None
    return await asyncio.to_thread(backend.open, text, history)


# -- the built-in backends -------------------------------------------------------------------


def _open_memory(url: str, history: int) -> Store:
    from corral.store.memory import MemoryStore

    if url not in ("memory://", "memory:"):
        raise ValueError(f"store URL {url!r}: the memory store takes no path; use memory://")
    return MemoryStore(history=history)


def _open_sqlite(url: str, history: int) -> Store:
    from corral.store.sqlite import STORE_FILE_NAME, SqliteStore

    if url.startswith("sqlite://"):
        path = Path(url.removeprefix("sqlite://"))
        if not path.is_absolute() or not path.name:
            raise ValueError(
                f"store URL {url!r}: use sqlite:///absolute/path/store.db (three slashes)"
            )
        return SqliteStore.open(path, history=history)
    path = Path(url)
    if path.is_dir() or not path.suffix:
        path = path / STORE_FILE_NAME
    return SqliteStore.open(path, history=history)


_ETCD_PARAMS = ("cafile", "certfile", "keyfile", "prefix", "dial_timeout", "request_timeout")


async def _connect_etcd(url: str, history: int) -> Store:
    from corral.store.etcd import EtcdOptions, connect_etcd

    parts = urlsplit(url)
    hosts = [h for h in parts.netloc.split(",") if h]
    if not hosts:
        raise ValueError(f"store URL {url!r}: name the etcd endpoints, e.g. etcd://10.0.0.1:2379")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - set(_ETCD_PARAMS))
    if unknown:
        raise ValueError(
            f"store URL {url!r}: unknown parameter {unknown[0]!r}; known: {', '.join(_ETCD_PARAMS)}"
        )

    def path(name: str) -> Path | None:
        return Path(query[name]) if query.get(name) else None

    try:
        timeouts = {k: float(query[k]) for k in ("dial_timeout", "request_timeout") if k in query}
    except ValueError:
        raise ValueError(f"store URL {url!r}: a timeout must be a number of seconds") from None
    options = EtcdOptions(
        endpoints=tuple(f"https://{host}" for host in hosts),
        cafile=path("cafile"),
        certfile=path("certfile"),
        keyfile=path("keyfile"),
        prefix=query.get("prefix", ""),
        **timeouts,
    )
    return await connect_etcd(options, history=history)


register(Backend("memory", "memory://", open=_open_memory))
register(Backend("sqlite", "sqlite:///path/store.db", open=_open_sqlite))
register(Backend("etcd", "etcd://host:2379,host:2379/?cafile=...", connect=_connect_etcd))
