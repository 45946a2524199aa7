"""`/v3/subscribe`: a WebSocket streaming the store's changes as v3 resources.

Messages (JSON text frames):
- `{"name":"resource.change"|"resource.remove","resourceType":T,"revision":"R","data":{…}}`
- `{"name":"ping","data":{}}` every PING_SECONDS (env CORRAL_SUBSCRIBE_PING_SECONDS)
- `{"name":"resource.error","data":<error envelope>}` before the server closes the socket

Query: `resourceTypes=T` (repeatable) filters by type; `revision=R` resumes after revision R
(the `revision` of the last event processed, or of a collection listing): every later event
is sent exactly once. Without `revision`, the server reads the store's revision before it
accepts the upgrade and streams from the next one, so every change committed after the upgrade
completed is sent (a store that cannot be asked refuses the upgrade with 503).

A revision the store has compacted gets a `resource.error` with status 410 and close code 4410:
list again, then subscribe with the listing's revision. A store that cannot be reached gets a
`resource.error` with status 503 and close code 4503: subscribe again later with the revision
of the last event processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from corral.server.api.envelope import Links, error_body
from corral.server.api.errors import APIError, InvalidQuery, to_api_error
from corral.server.api.http import links_for
from corral.server.api.ws import deny, handshake_principal
from corral.server.domain.records import KEY_ROOT, TOKENS, USERS, Record, decode, split_key
from corral.server.domain.tokens import Principal, Tokens
from corral.store.base import Compacted, Event, Store, StoreError
from corral.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PING_SECONDS = float(os.environ.get("CORRAL_SUBSCRIBE_PING_SECONDS", "5"))
CLOSE_COMPACTED = 4410  # application close code: resume revision is compacted
CLOSE_UNAUTHORIZED = 4401  # application close code: the token stopped being valid
CLOSE_UNAVAILABLE = 4503  # application close code: the store cannot be reached
CLOSE_POLICY = 1008


class LoginEnded(Exception):
    """The subscriber's own token or user went away while subscribed."""


Render = Callable[[Record, Links, Principal], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class EventKind:
    """How store keys of one collection become events: the type name, the rendering of a
    record, and who may see it."""

    collection: str
    resource_type: str
    render: Render
    visible: Callable[[Principal, Record], bool]


def event_message(
    event: Event, kind: EventKind, record: Record, data: dict[str, Any]
) -> dict[str, Any]:
    """The message for one store event (data already rendered)."""
    return {
        "name": "resource.change" if event.type == "put" else "resource.remove",
        "resourceType": kind.resource_type,
        "revision": str(event.kv.mod_revision),
        "data": data,
    }


def event_record(event: Event) -> Record | None:
    """The record an event is about: the new value on put, the previous one on delete."""
    if event.type == "put":
        return decode(event.kv)
    if event.prev_kv is not None:
        prev = decode(event.prev_kv)
        return Record(id=prev.id, data=prev.data, mod_revision=event.kv.mod_revision)
    parts = split_key(event.kv.key)
    return Record(id=parts[1], data={}, mod_revision=event.kv.mod_revision) if parts else None


def parse_revision(raw: str | None) -> int | None:
    """`?revision=` as a non-negative int (None when absent)."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise InvalidQuery(f"revision must be a whole number >= 0, got {raw!r}")
    return int(raw)


class Subscription:
    """One connected subscriber: pumps watch events and pings, one sender at a time."""

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        kinds: dict[str, EventKind],
        wanted_types: set[str],
        tokens: Tokens,
    ) -> None:
        self.websocket = websocket
        self.principal = principal
        self.kinds = kinds
        self.wanted_types = wanted_types  # empty: every type
        self.tokens = tokens
        self.links = links_for(websocket)
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message (serialised with other senders)."""
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))

    async def close_with_error(self, status: int, code: str, message: str, close: int) -> None:
        """Send a `resource.error` then close."""
        with contextlib.suppress(Exception):
            await self.send({"name": "resource.error", "data": error_body(status, code, message)})
            await self.websocket.close(code=close, reason=code)

    async def pump_events(self, store: Store, start_revision: int | None) -> None:
        """Forward every visible event from the watch until it ends."""
        try:
            watch = store.watch(KEY_ROOT, start_revision=start_revision)
            async with _closing(watch):
                async for event in watch:
                    await self._forward(event)
        except Compacted as exc:
            await self.close_with_error(410, "RevisionCompacted", str(exc), CLOSE_COMPACTED)
        except LoginEnded:
            await self.close_with_error(
                401, "Unauthorized", "the token was deleted or its user removed or disabled",
                CLOSE_UNAUTHORIZED,
            )
        except StoreError as exc:
            await self.close_store_error(exc)

    async def close_store_error(self, error: StoreError) -> None:
        """Tell the subscriber the store failed (503), then close with 4503."""
        answer = to_api_error(error)
        await self.close_with_error(answer.status, answer.code, answer.message,
                                    CLOSE_UNAVAILABLE)

    async def _forward(self, event: Event) -> None:
        parts = split_key(event.kv.key)
        kind = self.kinds.get(parts[0]) if parts else None
        record = event_record(event) if kind is not None else None
        if kind is None or record is None:
            return
        wanted = not self.wanted_types or kind.resource_type in self.wanted_types
        if wanted and kind.visible(self.principal, record):
            data = await kind.render(record, self.links, self.principal)
            await self.send(event_message(event, kind, record, data))
        if self._ends_own_login(kind, event, record):
            raise LoginEnded()

    def _ends_own_login(self, kind: EventKind, event: Event, record: Record) -> bool:
        """True when the event deletes the subscriber's token or deletes/disables its user."""
        if kind.collection == TOKENS:
            return event.type == "delete" and record.id == self.principal.token_id
        if kind.collection == USERS and record.id == self.principal.user_id:
            return event.type == "delete" or not record.data.get("enabled", True)
        return False

    async def ping(self) -> None:
        """A ping every PING_SECONDS; close when the caller's token stops being valid."""
        while True:
            await asyncio.sleep(PING_SECONDS)
            try:
                valid = await self.tokens.still_valid(self.principal)
            except StoreError as exc:
                await self.close_store_error(exc)
                return
            if not valid:
                await self.close_with_error(
                    401, "Unauthorized", "the token was deleted or expired", CLOSE_UNAUTHORIZED
                )
                return
            await self.send({"name": "ping", "data": {}})

    async def until_disconnect(self) -> None:
        """Drain client frames (the client sends none that matter) until it leaves."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[Event]) -> AsyncIterator[None]:
    """Close an async generator (the store's watch) when the subscription ends."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


class SubscribeAPI:
    """The `/v3/subscribe` WebSocket endpoint."""

    def __init__(self, store: Store, tokens: Tokens, kinds: dict[str, EventKind]) -> None:
        self.store = store
        self.tokens = tokens
        self.kinds = kinds
        self.types = {k.resource_type: k for k in kinds.values()}

    def routes(self) -> list[BaseRoute]:
        """`/v3/subscribe`."""
        return [WebSocketRoute("/v3/subscribe", self.subscribe, name="subscribe")]

    async def subscribe(self, websocket: WebSocket) -> None:
        """Authenticate, parse the filters, accept, then stream until either side leaves."""
        try:
            principal = handshake_principal(websocket, admin=False)
            wanted = websocket.query_params.getlist("resourceTypes")
            unknown = [t for t in wanted if t not in self.types]
            if unknown:
                raise InvalidQuery(
                    f"unknown resourceTypes {unknown} (known: {', '.join(sorted(self.types))})"
                )
            revision = parse_revision(websocket.query_params.get("revision"))
            if revision is None:  # before accepting: nothing committed after the upgrade is lost
                revision = await self.store.revision()
        except (APIError, StoreError) as error:
            await deny(websocket, to_api_error(error))
            return
        await websocket.accept()
        subscription = Subscription(websocket, principal, self.kinds, set(wanted), self.tokens)
        start = revision + 1
        tasks = [
            asyncio.create_task(subscription.pump_events(self.store, start)),
            asyncio.create_task(subscription.ping()),
            asyncio.create_task(subscription.until_disconnect()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(tasks)
            with contextlib.suppress(Exception):
                await websocket.close()
