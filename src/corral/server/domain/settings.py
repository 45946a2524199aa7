"""Settings: named string values, the stored override (`settings/<name>`: {"value": …}) or
else the definition's default. Unknown names do not exist; `cacerts` and `server-version` are
read-only; a few are public (readable without login, which the API decides from `public`).

Every server keeps the stored settings in memory and follows the store's watch to keep them
current (`Settings.start_following`): list at revision R, watch from R + 1, list again when the
watch's start is compacted or the store fails (then retry with a growing pause). Reads on the
hot path (`value`, `server_url`) come from that cache, so a setting changed through one server
is in force on every other as soon as its watch delivers the change. Until following starts
(tools, tests), reads go to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from corral import __version__
from corral.server.domain.errors import Invalid, NotFound, ReadOnly
from corral.server.domain.records import SETTINGS, Record, Records, decode, encode, split_key
from corral.store import StoreClosed
from corral.store.base import Compacted, Event, KeyValue, Store
from corral.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SESSION_TTL_SETTING = "auth-user-session-ttl-minutes"
SERVER_URL_SETTING = "server-url"
REGISTRY_SETTING = "system-default-registry"
CACERTS_SETTING = "cacerts"
RETRY_FIRST_S = 0.2  # pause before following again after the store failed …
RETRY_MAX_S = 5.0  # … doubling up to this
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._\-/]+)?$")


class SettingDefaults(Protocol):
    """Where the defaults that depend on how the server was started come from (the server's
    context provides these)."""

    @property
    def cacerts_pem(self) -> str:
        """The CA clients should trust ("" when none is published)."""

    @property
    def server_url_flag(self) -> str:
        """`--server-url`, "" when not given; it wins over the stored setting."""


def check_server_url(value: str) -> str | None:
    """Problem with a `server-url` value, or None: an absolute https URL with no path."""
    if value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https URL such as https://rancher.example.com"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return "must be just https://host[:port], without path, query or credentials"
    return None


def check_registry(value: str) -> str | None:
    """Problem with a `system-default-registry` value (`host[:port][/path]`, no scheme)."""
    if value == "" or _REGISTRY_RE.match(value):
        return None
    return "must be a registry like registry.example.com:5000 (no scheme, no trailing slash)"


def check_minutes(value: str) -> str | None:
    """Problem with a whole number of minutes (>= 1)."""
    return None if value.isdigit() and int(value) >= 1 else "must be a whole number >= 1"


def check_telemetry(value: str) -> str | None:
    """Problem with a `telemetry-opt` value."""
    return None if value in ("in", "out", "prompt") else "must be one of: in, out, prompt"


@dataclass(frozen=True, slots=True)
class SettingDefinition:
    """A known setting: its default (possibly from how the server was started), whether admins
    may change it, whether it is readable without login, and how its values are checked."""

    name: str
    default: Callable[[SettingDefaults], str]
    writable: bool = True
    public: bool = False
    check: Callable[[str], str | None] | None = None


DEFINITIONS: dict[str, SettingDefinition] = {
    d.name: d
    for d in (
        SettingDefinition(CACERTS_SETTING, lambda src: src.cacerts_pem, writable=False,
                          public=True),
        SettingDefinition(SERVER_URL_SETTING, lambda src: src.server_url_flag,
                          check=check_server_url),
        SettingDefinition(REGISTRY_SETTING, lambda src: "", check=check_registry),
        SettingDefinition(SESSION_TTL_SETTING, lambda src: "960", check=check_minutes),
        SettingDefinition("server-version", lambda src: f"v{__version__}", writable=False,
                          public=True),
        SettingDefinition("ui-pl", lambda src: "Corral", public=True),
        SettingDefinition("telemetry-opt", lambda src: "prompt", check=check_telemetry),
    )
}


def definition_of(name: str) -> SettingDefinition:
    """The definition of a known setting; NotFound (naming the known ones) otherwise."""
    definition = DEFINITIONS.get(name)
    if definition is None:
        raise NotFound(f"setting {name!r} not found (known: {', '.join(sorted(DEFINITIONS))})")
    return definition


def writable_definition(name: str) -> SettingDefinition:
    """The definition of a setting admins may change: NotFound or ReadOnly otherwise."""
    definition = definition_of(name)
    if not definition.writable:
        raise ReadOnly(f"setting {name!r} is read-only")
    return definition


class Settings:
    """The settings of one store, cached in memory while following its watch."""

    def __init__(self, store: Store, defaults: SettingDefaults) -> None:
        self.store = store
        self.defaults = defaults
        self.records = Records(store, SETTINGS, "setting")
        # name → (revision of what we know, the stored record or None once deleted)
        self._cache: dict[str, tuple[int, Record | None]] = {}
        self._revision = 0  # the cache holds every change up to this store revision
        self._following = False
        self._task: asyncio.Task[None] | None = None

    # -- reads -----------------------------------------------------------------------------

    @property
    def following(self) -> bool:
        """True while the cache follows the store (reads need no store round trip)."""
        return self._following

    def default(self, name: str) -> str:
        """The default of a known setting."""
        return DEFINITIONS[name].default(self.defaults)

    async def stored(self, name: str) -> Record | None:
        """The stored override of a writable setting, or None."""
        if not DEFINITIONS[name].writable:
            return None
        if self._following:
            return self._cached(name)
        return await self.records.get(name)

    async def stored_all(self) -> tuple[dict[str, Record], int]:
        """Every stored override by name, and the revision the answer is current to."""
        if self._following:
            found = {name: record for name, (_, record) in self._cache.items() if record}
            return dict(sorted(found.items())), self._revision
        records, revision = await self.records.list()
        return {r.id: r for r in records}, revision

    async def value(self, name: str) -> str:
        """The effective value of a known setting: the stored override, else the default."""
        record = await self.stored(name)
        return self.default(name) if record is None else str(record.data.get("value", ""))

    def cached_value(self, name: str) -> str:
        """`value` from the cache alone, for code that cannot wait (the default for a setting
        the cache does not hold, e.g. before following starts)."""
        record = self._cached(name) if DEFINITIONS[name].writable else None
        return self.default(name) if record is None else str(record.data.get("value", ""))

    async def server_url(self) -> str:
        """The URL operators reach the servers by: `--server-url` when given, else the
        `server-url` setting ("" when neither is set)."""
        flag = self.defaults.server_url_flag
        record = None if flag else await self.stored(SERVER_URL_SETTING)
        return flag or ("" if record is None else str(record.data.get("value", "")))

    def cached_server_url(self) -> str:
        """`server_url` without a store round trip, for code that cannot wait (the redirect
        rules, the certificate's names): the setting as the watch last delivered it ("" until
        following starts)."""
        flag = self.defaults.server_url_flag
        record = None if flag else self._cached(SERVER_URL_SETTING)
        return flag or ("" if record is None else str(record.data.get("value", "")))

    def _cached(self, name: str) -> Record | None:
        entry = self._cache.get(name)
        return None if entry is None else entry[1]

    # -- writes ----------------------------------------------------------------------------

    async def set(self, name: str, value: str) -> Record:
        """Store a new value for a writable setting (the last write wins). NotFound for an
        unknown name, ReadOnly for a read-only one, Invalid for a value its check refuses."""
        definition = writable_definition(name)
        problem = definition.check(value) if definition.check else None
        if problem:
            raise Invalid(f"field 'value' of setting {name!r} {problem}")
        data = {"value": value}
        revision = await self.store.put(self.records.key(name), encode(data))
        record = Record(id=name, data=data, mod_revision=revision)
        self._learn(name, revision, record)  # this server reads its own write at once
        return record

    # -- following the store ---------------------------------------------------------------

    async def start_following(self) -> asyncio.Task[None]:
        """Load every stored setting, then keep the cache current from the store's watch in a
        task (returned; `stop_following` ends it). Raises the store's error when the first
        load fails (then nothing is started). Calling it again returns the running task."""
        if self._task is not None and not self._task.done():
            return self._task
        revision = await self._load()
        self._following = True
        self._task = asyncio.create_task(self._follow(revision), name="settings-follower")
        return self._task

    async def stop_following(self) -> None:
        """End the watch task; later reads go to the store again."""
        task, self._task = self._task, None
        self._following = False
        if task is not None:
            await cancel_and_wait([task])

    async def _load(self) -> int:
        """List the collection into the cache; entries learnt after the listing's revision
        (this server's own writes) are kept. Returns the listing's revision."""
        kvs, revision = await self.store.range(self.records.prefix)
        fresh: dict[str, tuple[int, Record | None]] = {
            name: entry for name, entry in self._cache.items() if entry[0] > revision
        }
        for kv in kvs:
            record = _decoded(kv)
            if record is not None:
                fresh.setdefault(record.id, (kv.mod_revision, record))
        self._cache = fresh
        self._revision = max(self._revision, revision)
        return revision

    async def _follow(self, revision: int) -> None:
        """Apply watch events from `revision + 1`; list again after a compaction, a store
        failure or a watch that ended (pausing, with a growing pause, unless it was a
        compaction). Returns when the store closes."""
        pause = RETRY_FIRST_S
        while True:
            try:
                watch = self.store.watch(self.records.prefix, start_revision=revision + 1)
                async with _closing(watch):
                    async for event in watch:
                        self._apply(event)
                        pause = RETRY_FIRST_S
                problem = "the store ended the watch"
            except StoreClosed:
                return
            except Compacted:
                log.info("settings watch start was compacted; listing the settings again")
                problem = ""
            except Exception as exc:  # a store outage must not end following for good
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                log.warning("following the settings failed (%s); retrying in %.1fs",
                            problem, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)
            try:
                revision = await self._load()
            except StoreClosed:
                return
            except Exception as exc:
                log.warning("listing the settings failed (%s: %s)", type(exc).__name__, exc)
                revision = self._revision

    def _apply(self, event: Event) -> None:
        parts = split_key(event.kv.key)
        if parts is not None and parts[0] == SETTINGS:
            record = _decoded(event.kv) if event.type == "put" else None
            self._learn(parts[1], event.kv.mod_revision, record)
        self._revision = max(self._revision, event.kv.mod_revision)

    def _learn(self, name: str, revision: int, record: Record | None) -> None:
        """Keep what is known at `revision` unless something newer is already known (a write
        of our own does not move `_revision`: changes before it may still be on their way)."""
        known = self._cache.get(name)
        if known is None or known[0] < revision:
            self._cache[name] = (revision, record)


def _decoded(kv: KeyValue) -> Record | None:
    """The stored setting, or None (logged) when the value is not a JSON object."""
    try:
        return decode(kv)
    except ValueError:
        log.warning("ignoring store key %s: its value is not a JSON object", kv.key)
        return None


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[Event]) -> AsyncIterator[None]:
    """Close the store's watch (an async generator) when following ends."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
