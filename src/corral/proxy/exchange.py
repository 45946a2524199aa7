"""One request and its response on their way through the proxy.

The exchange chooses an endpoint, borrows or opens an upstream connection, streams the request
body up and the response down (no buffering beyond one read), retries where that is safe, and
maps upstream failures to 502/504. It holds no socket itself: `ClientConnection` and
`UpstreamConnection` move the bytes and call in here. Its phases and the moves between them are
the table in `exchange_phase`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from corral.proxy import exchange_phase, forwarding
from corral.proxy.constants import HOLD_LIMIT_BYTES, LAST_CHUNK, REPLAY_LIMIT_BYTES
from corral.proxy.errors import BAD_GATEWAY, GATEWAY_TIMEOUT, ProxyStatus
from corral.proxy.exchange_phase import FINAL, Phase, check
from corral.proxy.upstream_conn import UpstreamConnection

if TYPE_CHECKING:
    from corral.proxy.downstream import Downstream
    from corral.proxy.routing import ServerRoute
    from corral.proxy.upstream import Endpoint, UpstreamPool


class Exchange:
    """A request being proxied, from its head to the end of its response."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "chunked",
        "client",
        "close_after",
        "connect_task",
        "counted",
        "endpoint",
        "framing",
        "fresh_retry",
        "head",
        "head_request",
        "held_body",
        "held_head",
        "http10",
        "idempotent",
        "keep_alive",
        "method",
        "path",
        "pending",
        "pending_size",
        "phase",
        "pool",
        "replay",
        "replay_size",
        "request_done",
        "reused",
        "route",
        "sent_upstream",
        "started",
        "status",
        "tried",
        "upgrade",
        "upstream",
        "upstream_last",
    )

    def __init__(
        self,
        client: Downstream,
        route: ServerRoute,
        method: bytes,
        path: bytes,
        head: bytes,
        *,
        chunked: bool,
        upgrade: bytes | None,
        http10: bool,
    ) -> None:
        self.client = client
        self.route = route
        self.pool: UpstreamPool | None = route.pool
        self.method = method
        self.path = path
        self.head = head
        self.chunked = chunked
        self.upgrade = upgrade
        self.head_request = method == b"HEAD"
        self.http10 = http10
        self.keep_alive = True  # the client's wish, final once the request is complete
        self.idempotent = method in forwarding.IDEMPOTENT_METHODS
        self.started = time.monotonic()
        self.upstream: UpstreamConnection | None = None
        self.endpoint: Endpoint | None = None
        self.counted = False  # this exchange is in endpoint.active
        self.reused = False  # the upstream connection came from the keep-alive pool
        self.fresh_retry = False  # already retried once on a fresh connection
        self.connect_task: asyncio.Task[None] | None = None
        self.tried: tuple[Endpoint, ...] = ()
        self.pending: list[bytes] = []  # body bytes that arrived before an upstream was attached
        self.pending_size = 0  # their total length
        self.replay: list[bytes] | None = []  # body bytes kept for a retry (None: too large)
        self.replay_size = 0
        self.sent_upstream = False  # some of the request reached an endpoint
        self.request_done = False
        self.phase = Phase.NEW
        self.held_head: tuple[int, bytes, list[tuple[bytes, bytes]]] | None = None
        self.held_body: list[bytes] = []
        self.framing = forwarding.FRAMING_NONE
        self.close_after = False
        self.status = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.upstream_last = client.engine.now

    # -- phase ---------------------------------------------------------------------------------
    @property
    def response_started(self) -> bool:
        """The response head went to the client (or the exchange ended some other way)."""
        return self.phase >= Phase.RESPONDING

    @property
    def response_done(self) -> bool:
        """Nothing more of this exchange's response will be sent."""
        return self.phase >= Phase.DONE

    def _enter(self, phase: Phase) -> None:
        observer = exchange_phase.observer
        if observer is not None:
            observer(self, phase)
        self.phase = check(self.phase, phase)

    # -- request direction ---------------------------------------------------------------------
    def start(self) -> None:
        """Send the request to the first endpoint the balancer chooses (or, on a redirect
        server, answer with the redirect)."""
        if self.pool is None:
            route = self.route
            status = route.redirect_status
            self.status = status
            self._enter(Phase.DONE)
            location = route.redirect_location(self.path)
            reason, body = forwarding.redirect_body(status)
            headers = [(b"Location", location), (b"Content-Type", b"text/html")]
            self.client.send_local(self, status, reason, headers, body)
            self._finish(self.close_after)
            return
        self._try_next()

    def _try_next(self) -> None:
        pool = self.pool
        assert pool is not None
        engine = self.client.engine
        endpoint = pool.choose(engine.now, self.tried)
        if endpoint is None:  # every candidate was tried (with none healthy, every one)
            self.fail(BAD_GATEWAY, f"upstream {pool.name!r}: no endpoint could be reached")
            return
        self.tried += (endpoint,)
        self._use(endpoint, pooled=True)

    def _use(self, endpoint: Endpoint, *, pooled: bool) -> None:
        self.endpoint = endpoint
        self.counted = True
        endpoint.active += 1
        if self.sent_upstream and self.replay is not None:  # a retry: send everything again
            self.pending = list(self.replay)
            self.pending_size = self.replay_size
        conn = endpoint.take_idle() if pooled else None
        if conn is not None:
            assert isinstance(conn, UpstreamConnection)
            self.reused = True
            self._attach(conn)
        else:
            self.reused = False
            self._enter(Phase.CONNECTING)
            engine = self.client.engine
            self.connect_task = engine.loop.create_task(self._connect(endpoint))

    async def _connect(self, endpoint: Endpoint) -> None:
        engine = self.client.engine
        pool = self.pool
        assert pool is not None
        try:
            _, conn = await asyncio.wait_for(
                engine.loop.create_connection(
                    lambda: UpstreamConnection(engine, endpoint), endpoint.host, endpoint.port
                ),
                pool.config.connect_timeout,
            )
        except asyncio.CancelledError:
            self.connect_task = None
            raise  # abort() cancelled it: the task ends cancelled, as asyncio expects
        except (OSError, TimeoutError) as exc:
            self.connect_task = None
            endpoint.note_connect_failure(
                pool.config.max_fails, pool.config.fail_timeout, pool.active_checks
            )
            engine.note_error(f"connect to {endpoint.address} ({pool.name}) failed: {exc!r}")
            self._leave_endpoint()
            if self.client.exchange is self and not self.response_started:
                if self.replay is not None:  # nothing reached an endpoint: always safe to retry
                    self._try_next()
                else:
                    self.fail(BAD_GATEWAY, f"upstream {pool.name!r}: connect failed")
            return
        self.connect_task = None
        endpoint.note_success()
        if self.client.exchange is not self or self.response_done:  # client went away meanwhile
            conn.close()
            return
        self._attach(conn)

    def _attach(self, conn: UpstreamConnection) -> None:
        self._enter(Phase.SENT)
        self.upstream = conn
        conn.exchange = self
        self.upstream_last = self.client.engine.now
        self.sent_upstream = True
        if self.pending:
            data = b"".join([self.head, *self.pending])
            self.pending = []
            self.pending_size = 0
        else:
            data = self.head
        if self.request_done and self.chunked:
            data += LAST_CHUNK
        conn.transport.write(data)
        self.client.resume_reading_for_exchange()

    def send_body(self, chunk: bytes) -> None:
        """A piece of the request body from the client (already de-chunked by the parser)."""
        self.bytes_received += len(chunk)
        if self.chunked:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        replay = self.replay
        if replay is not None:
            self.replay_size += len(chunk)
            if self.replay_size <= REPLAY_LIMIT_BYTES:
                replay.append(chunk)
            else:
                self.replay = None
        upstream = self.upstream
        if upstream is not None:
            upstream.transport.write(chunk)
            self.upstream_last = self.client.engine.now
        else:
            self.pending.append(chunk)
            self.pending_size += len(chunk)
            if self.pending_size > REPLAY_LIMIT_BYTES:
                self.client.pause_reading_for_exchange()

    def request_complete(self) -> None:
        """The client has sent the whole request."""
        self.request_done = True
        if self.chunked and self.upstream is not None:
            self.upstream.transport.write(LAST_CHUNK)

    # -- response direction --------------------------------------------------------------------
    def on_interim(self, status: int, reason: bytes) -> None:
        """A 1xx response other than 101 (e.g. 100 Continue): relay it to HTTP/1.1 clients."""
        self.client.send_interim(self, status, reason)

    def on_response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
        content_length: int = -1,
    ) -> None:
        """The upstream's final response head (`content_length` -1 when it has none)."""
        self.status = status
        if self.endpoint is not None:
            self.endpoint.note_success()
        if (0 <= content_length <= HOLD_LIMIT_BYTES and self.idempotent
                and self.replay is not None):
            self.held_head = (status, reason, headers)
            self.held_body = []
            return  # still SENT: a break now is retried like a request with no answer
        self._enter(Phase.RESPONDING)
        self.client.start_response(self, status, reason, headers)

    def _release_held(self, held: tuple[int, bytes, list[tuple[bytes, bytes]]]) -> None:
        """Relay a held response (now complete) to the client."""
        self.held_head = None
        self._enter(Phase.RESPONDING)
        status, reason, headers = held
        client = self.client
        client.start_response(self, status, reason, headers)
        for chunk in self.held_body:
            client.send_body(self, chunk)
        self.held_body = []

    def on_switching_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], rest: bytes
    ) -> None:
        """The upstream accepted the Upgrade: relay the 101 and turn both sides into a tunnel."""
        client = self.client
        conn = self.upstream
        assert conn is not None
        self.status = 101
        self._enter(Phase.TUNNEL)
        self._leave_endpoint()
        self.upstream = None
        conn.exchange = None
        client.switch_protocols(self, reason, headers, conn, rest)
        client.engine.log_exchange(self)

    def on_response_body(self, chunk: bytes) -> None:
        """A piece of the response body (de-chunked by the parser)."""
        if self.held_head is not None:
            self.held_body.append(chunk)
            return
        self.client.send_body(self, chunk)

    def on_response_complete(self, upstream_reusable: bool) -> None:
        """The upstream finished the response."""
        held = self.held_head
        if held is not None:
            self._release_held(held)
        self.client.end_response(self)
        if self.phase in FINAL:  # writing the end failed and the client side gave up on it
            return
        self._enter(Phase.DONE)
        self._detach_upstream(reuse=upstream_reusable and self.request_done)
        self._finish(self.close_after)

    def on_upstream_lost(self, error: ProxyStatus) -> None:
        """The upstream connection broke (or sent garbage) before the response ended."""
        # A pooled connection found dead before any response: says nothing of the endpoint.
        stale = self.reused and not self.response_started and self.held_head is None
        self._detach_upstream(reuse=False)
        self._leave_endpoint()
        if self.response_done:
            return
        if self.held_head is not None:  # nothing reached the client: retry below
            self.client.engine.note_error(
                f"upstream {self.endpoint_address()} broke before its response was complete"
                f" ({error.detail}); trying another endpoint"
            )
            self.held_head = None
            self.held_body = []
        if self.response_started:
            self.client.engine.note_error(
                f"upstream {self.endpoint_address()} broke mid-response: {error.detail}"
            )
            self._enter(Phase.ABANDONED)
            self._finish(close=True, aborted=True)
            return
        if self.replay is not None and (self.idempotent or not self.sent_upstream):
            if stale and not self.fresh_retry and self.endpoint is not None:
                # The endpoint closed an idle keep-alive connection just as we used it: that
                # says nothing about its health, so try it once more on a new connection.
                self.fresh_retry = True
                self._use(self.endpoint, pooled=False)
            else:
                self._try_next()
            return
        self.fail(error, error.detail)

    def on_timeout(self) -> None:
        """No byte from the upstream within read_timeout."""
        self.client.engine.note_error(
            f"upstream {self.endpoint_address()} timed out after {self.route.read_timeout}s"
        )
        self._detach_upstream(reuse=False)
        self._leave_endpoint()
        self.held_head = None
        if self.response_started:
            self._enter(Phase.ABANDONED)
            self._finish(close=True, aborted=True)
        else:
            self.fail(GATEWAY_TIMEOUT, f"upstream {self.endpoint_address()} timed out")

    def fail(self, status: ProxyStatus, detail: str) -> None:
        """Answer the client with an error of the proxy's own (nothing was sent yet)."""
        self._enter(Phase.DONE)
        self.status = status.code
        headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
        body = detail.encode() + b"\n"
        self.client.send_local(self, status.code, status.reason.encode(), headers, body)
        self._finish(self.close_after)

    def client_gone(self, status: int = 499) -> None:
        """The client left (closed, or reset its stream) before the exchange was over: `status`
        (499, NGINX's "client closed request") if nothing was answered yet, drop everything
        upstream, and log it."""
        if self.response_done:
            return
        if not self.response_started:
            self.status = status
        self.abort()
        self.client.engine.log_exchange(self)

    def abort(self) -> None:
        """Drop everything upstream (the client went away, or its request broke mid-way)."""
        if self.phase not in FINAL:
            self._enter(Phase.ABANDONED)
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        self._detach_upstream(reuse=False)
        self._leave_endpoint()

    # -- bookkeeping ---------------------------------------------------------------------------
    def endpoint_address(self) -> str:
        """The endpoint this exchange went to, or "-"."""
        return self.endpoint.address if self.endpoint is not None else "-"

    def _leave_endpoint(self) -> None:
        if self.counted and self.endpoint is not None:
            self.endpoint.active -= 1
            self.counted = False

    def _detach_upstream(self, reuse: bool) -> None:
        conn = self.upstream
        if conn is None:
            return
        self.upstream = None
        conn.exchange = None
        endpoint = self.endpoint
        if reuse and endpoint is not None and conn.is_usable():
            conn.resume_reading()
            endpoint.give_back(conn)
        else:
            conn.close()

    def _finish(self, close: bool, aborted: bool = False) -> None:
        self._detach_upstream(reuse=False)
        self._leave_endpoint()
        self.client.engine.log_exchange(self)
        self.client.exchange_finished(self, close=close or aborted)
