"""The writing half of a downstream HTTP/1.1 connection: responses re-framed for the client
(chunked, length or close-delimited), the proxy's own answers, and output batching so a small
response leaves in one write (one TLS record)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from corral.proxy import forwarding
from corral.proxy.constants import LAST_CHUNK

if TYPE_CHECKING:
    from corral.proxy.engine import Engine
    from corral.proxy.exchange import Exchange
    from corral.proxy.upstream_conn import UpstreamConnection


class Http1Writer:
    """Mixed into `ClientConnection`: everything an exchange asks it to send."""

    __slots__ = ("batch_depth", "close_pending", "out")
    batch_depth: int  # open begin_batch() calls
    close_pending: bool  # close once the batch is written
    out: list[bytes]  # what the open batch collected

    engine: Engine
    transport: asyncio.Transport
    closed: bool

    def become_tunnel(self, upstream: UpstreamConnection, upstream_rest: bytes) -> None:
        raise NotImplementedError  # ClientConnection's

    # -- the Downstream interface (what exchanges call) -------------------------------------------
    def _closes_after(self, exchange: Exchange) -> bool:
        # The parser is mid-body, switched protocols, or the client asked to close.
        return (
            not exchange.request_done
            or not exchange.keep_alive
            or exchange.upgrade is not None
            or self.engine.draining
        )

    def send_interim(self, exchange: Exchange, status: int, reason: bytes) -> None:
        """Relay 1xx to HTTP/1.1 clients (HTTP/1.0 has none)."""
        if not exchange.http10:
            self.send(b"HTTP/1.1 %d %s\r\n\r\n" % (status, reason))

    def start_response(
        self, exchange: Exchange, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """The response head, re-framed for this client."""
        framing, close = forwarding.response_framing(
            status, headers, head_request=exchange.head_request, client_http10=exchange.http10
        )
        close = close or self._closes_after(exchange)
        exchange.framing = framing
        exchange.close_after = close
        policy = exchange.route.response_headers
        head = forwarding.build_response_head(
            status,
            reason,
            headers if policy is None else policy.apply(headers),
            framing=framing,
            close=close,
            client_http10=exchange.http10,
        )
        exchange.bytes_sent += len(head)
        self.send(head)

    def send_body(self, exchange: Exchange, chunk: bytes) -> None:
        """A piece of body, chunk-framed when the response is re-chunked."""
        if exchange.framing == forwarding.FRAMING_CHUNKED:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        exchange.bytes_sent += len(chunk)
        self.send(chunk)

    def end_response(self, exchange: Exchange) -> None:
        """The last chunk, when chunked."""
        if exchange.framing == forwarding.FRAMING_CHUNKED:
            exchange.bytes_sent += len(LAST_CHUNK)
            self.send(LAST_CHUNK)

    def send_local(
        self,
        exchange: Exchange,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """A whole response made by the proxy."""
        close = exchange.close_after = self._closes_after(exchange)
        policy = exchange.route.response_headers
        if policy is not None:
            headers = policy.local(headers)
        data = forwarding.local_response(
            status, reason, headers, body, close=close, head_only=exchange.head_request
        )
        exchange.bytes_sent += len(data)
        self.send(data)

    def switch_protocols(
        self,
        exchange: Exchange,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        upstream: UpstreamConnection,
        rest: bytes,
    ) -> None:
        """Relay the 101, then become a byte tunnel."""
        policy = exchange.route.response_headers
        head = forwarding.build_response_head(
            101,
            reason,
            headers if policy is None else policy.apply(headers),
            framing=forwarding.FRAMING_NONE,
            close=False,
            client_http10=False,
            upgrade=True,
        )
        exchange.bytes_sent += len(head)
        self.send(head)
        self.become_tunnel(upstream, rest)

    # -- output ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write to the client (coalesced while a batch is open)."""
        if self.batch_depth:
            self.out.append(data)
        elif not self.closed:
            self.transport.write(data)

    def begin_batch(self) -> None:
        """Collect writes until `end_batch`, so a small response leaves in one TLS record."""
        self.batch_depth += 1

    def end_batch(self) -> None:
        """Write what the batch collected; close if the exchange asked for it."""
        self.batch_depth -= 1
        if self.batch_depth:
            return
        out = self.out
        if out:
            if not self.closed:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self.close_pending and not self.closed:
            self.transport.close()

    def _close_soon(self) -> None:
        self.close_pending = True
        if not self.batch_depth and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (nothing more is written)."""
        if not self.closed:
            self.transport.abort()
