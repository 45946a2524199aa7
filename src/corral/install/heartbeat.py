"""A node supervisor's heartbeat: the node's record in etcd, with its services' health.

The servers turn these records into `kubectl get nodes`' Ready/NotReady
(`corral.server.domain.nodes`). A failed write is logged once per distinct error and retried
on the next beat; the connection is made again after any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from corral import __version__
from corral.install.supervisor_spec import HeartbeatSpec
from corral.server.domain.nodes import NodeRecord, ServiceHealth, node_key, write_node
from corral.store.base import Store

CONNECT_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 5.0


def node_record(
    spec: HeartbeatSpec,
    services: Mapping[str, tuple[bool, str]],
    *,
    created_at_ms: int,
    now_ms: int,
) -> NodeRecord:
    """The record a beat writes (pure)."""
    return NodeRecord(
        name=spec.name,
        roles=spec.roles,
        address=spec.address,
        internal_address=spec.internal_address,
        version=f"v{__version__}",
        heartbeat_at_ms=now_ms,
        created_at_ms=created_at_ms,
        hostname=spec.name,
        labels=dict(spec.labels),
        services={name: ServiceHealth(ok, detail) for name, (ok, detail) in services.items()},
    )


async def connect(spec: HeartbeatSpec) -> Store:
    """A store on the cluster's etcd with the node's client certificate."""
    from corral.store.etcd import EtcdOptions, connect_etcd

    options = EtcdOptions(
        endpoints=spec.endpoints,
        cafile=Path(spec.cafile) if spec.cafile else None,
        certfile=Path(spec.certfile) if spec.certfile else None,
        keyfile=Path(spec.keyfile) if spec.keyfile else None,
        prefix=spec.prefix,
        dial_timeout=CONNECT_TIMEOUT_S,
        request_timeout=WRITE_TIMEOUT_S,
    )
    return await connect_etcd(options)


class Heartbeat:
    """Writes one node's record; `beat` never raises."""

    def __init__(
        self,
        spec: HeartbeatSpec,
        say: Callable[[str], None],
        connector: Callable[[HeartbeatSpec], Awaitable[Store]] | None = None,
    ) -> None:
        self.spec = spec
        self.say = say
        self._connector = connector or connect
        self._store: Store | None = None
        self._created_at_ms = 0
        self._last_error = ""
        self.beats = 0

    async def _open(self) -> Store:
        if self._store is None:
            async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
                store = await self._connector(self.spec)
            existing = await store.get(node_key(self.spec.name))
            if existing is not None:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    self._created_at_ms = NodeRecord.from_json(existing.value).created_at_ms
            self._store = store
        return self._store

    async def beat(self, services: Mapping[str, tuple[bool, str]]) -> bool:
        """Write the record now; True when it was written."""
        now_ms = int(time.time() * 1000)
        try:
            store = await self._open()
            if not self._created_at_ms:
                self._created_at_ms = now_ms
            record = node_record(
                self.spec, services, created_at_ms=self._created_at_ms, now_ms=now_ms
            )
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await write_node(store, record)
        except Exception as exc:  # any failure: log it once, reconnect next time
            why = str(exc) or "no answer in time"  # a timeout has no message of its own
            text = f"{type(exc).__name__}: {why}".splitlines()[0][:300]
            if text != self._last_error:
                self.say(f"heartbeat not written ({text}); retrying")
                self._last_error = text
            await self.close()
            return False
        if self._last_error:
            self.say("heartbeat written again")
            self._last_error = ""
        self.beats += 1
        return True

    async def close(self) -> None:
        """Drop the connection."""
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()
