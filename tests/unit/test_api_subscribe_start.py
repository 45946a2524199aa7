"""`/v3/subscribe` without `?revision=` (in-process, a MemoryStore): a change committed the
moment the upgrade is accepted, before the handler has started its watch, is still sent; a
store that cannot be asked refuses the upgrade with 503."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message

from corral.server.api import build_routes
from corral.server.auth import AuthMiddleware
from corral.server.context import ServerContext
from tests.support.flaky_store import FlakyStore

EVENT_TIMEOUT_S = 2.0


class NoRevisionStore(FlakyStore):
    """A FlakyStore that answers reads but not `revision()` (it fails as an unreachable store
    does), counting the calls."""

    revision_calls = 0

    async def revision(self) -> int:
        self.revision_calls += 1
        raise self._unavailable()


def scope_for(token: str) -> dict[str, Any]:
    """The ASGI scope of `GET /v3/subscribe` upgraded to a WebSocket, with a bearer token."""
    return {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "http_version": "1.1",
        "path": "/v3/subscribe", "raw_path": b"/v3/subscribe", "root_path": "",
        "query_string": b"resourceTypes=setting", "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000), "subprotocols": [],
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "extensions": {"websocket.http.response": {}},
    }


async def connect(app: ASGIApp, token: str, on_accept: Callable[[], Awaitable[None]]
                  ) -> tuple[asyncio.Task[None], asyncio.Queue[Message], asyncio.Queue[Message]]:
    """Run the app on one WebSocket; `on_accept` runs inside the app's `accept` (the write
    lands after the upgrade, before anything the handler does next). Returns the app's task,
    the client→app queue and the app→client queue."""
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    outgoing: asyncio.Queue[Message] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})

    async def send(message: Message) -> None:
        if message["type"] == "websocket.accept":
            await on_accept()
        await outgoing.put(message)

    async def serve() -> None:
        await app(scope_for(token), incoming.get, send)

    return asyncio.create_task(serve()), incoming, outgoing


async def setup(store: FlakyStore, tmp_path: Path) -> tuple[ServerContext, ASGIApp, str]:
    """A server context on `store`, its ASGI app and an admin's token."""
    ctx = ServerContext(store=store, data_dir=tmp_path)
    app = AuthMiddleware(Starlette(routes=build_routes(ctx)), ctx)
    user = await ctx.users.create(username="admin", password="password-0001", admin=True)
    _, token = await ctx.tokens.issue(user.id, ttl_ms=0, description="", kind="session")
    return ctx, app, token


async def stop(task: asyncio.Task[None], incoming: asyncio.Queue[Message]) -> None:
    """Disconnect the client and wait for the app to finish."""
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, EVENT_TIMEOUT_S)


def test_a_change_committed_at_the_upgrade_is_sent(tmp_path: Path) -> None:
    """A setting written while the server accepts the upgrade arrives as resource.change."""

    async def main() -> None:
        store = FlakyStore()
        ctx, app, token = await setup(store, tmp_path)

        async def write() -> None:
            await ctx.settings.set("ui-pl", "written-at-the-upgrade")

        task, incoming, outgoing = await connect(app, token, write)
        assert (await asyncio.wait_for(outgoing.get(), EVENT_TIMEOUT_S))["type"] == \
            "websocket.accept"
        message = await asyncio.wait_for(outgoing.get(), EVENT_TIMEOUT_S)
        event = json.loads(message["text"])
        assert event["name"] == "resource.change"
        assert event["data"]["id"] == "ui-pl"
        assert event["data"]["value"] == "written-at-the-upgrade"
        await stop(task, incoming)
        await store.close()

    asyncio.run(main())


def test_a_store_that_cannot_be_asked_refuses_the_upgrade(tmp_path: Path) -> None:
    """When the store's revision cannot be read (after authentication), the upgrade is denied
    with a 503 naming the store's problem."""

    async def main() -> None:
        store = NoRevisionStore()
        _, app, token = await setup(store, tmp_path)
        outgoing: asyncio.Queue[Message] = asyncio.Queue()

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        await asyncio.wait_for(app(scope_for(token), receive, outgoing.put), EVENT_TIMEOUT_S)
        start = await outgoing.get()
        assert start["type"] == "websocket.http.response.start"
        assert start["status"] == 503
        body = await outgoing.get()
        assert "unavailable" in json.loads(body["body"])["message"]
        assert store.revision_calls == 1
        await store.close()

    asyncio.run(main())
