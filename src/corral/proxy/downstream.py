"""What an exchange needs from the client side: the boundary between the proxying logic and a
client protocol (HTTP/1.1 connection today, an HTTP/2 stream next). The exchange never writes
bytes itself; it tells its downstream what happened and the downstream speaks its protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from corral.proxy.engine import Engine
    from corral.proxy.exchange import Exchange
    from corral.proxy.upstream_conn import UpstreamConnection

HeaderList = list[tuple[bytes, bytes]]


class Downstream(Protocol):
    """The client side of exchanges."""

    engine: Engine
    client_ip: bytes
    protocol: str  # for the access log: "HTTP/1.1", "HTTP/2.0"

    @property
    def exchange(self) -> Exchange | None:
        """The exchange running now (None when idle or after the client left)."""
        ...

    def send_interim(self, exchange: Exchange, status: int, reason: bytes) -> None:
        """Relay a 1xx (not 101) response, where the client's protocol allows it."""

    def start_response(
        self, exchange: Exchange, status: int, reason: bytes, headers: HeaderList
    ) -> None:
        """Send the final response head; set `exchange.close_after` and count bytes sent."""

    def send_body(self, exchange: Exchange, chunk: bytes) -> None:
        """Send a piece of the response body (backpressure via the upstream's reading)."""

    def end_response(self, exchange: Exchange) -> None:
        """The response body is complete."""

    def send_local(
        self, exchange: Exchange, status: int, reason: bytes, headers: HeaderList, body: bytes
    ) -> None:
        """Send a whole response the proxy made itself (error, redirect)."""

    def switch_protocols(
        self,
        exchange: Exchange,
        reason: bytes,
        headers: HeaderList,
        upstream: UpstreamConnection,
        rest: bytes,
    ) -> None:
        """The upstream answered 101: relay it and become a tunnel to `upstream`."""

    def exchange_finished(self, exchange: Exchange, *, close: bool) -> None:
        """The exchange is over (response complete, failed or abandoned)."""

    def begin_batch(self) -> None:
        """Collect output until `end_batch` (one write per upstream read)."""

    def end_batch(self) -> None:
        """Flush what `begin_batch` collected."""

    def pause_reading_for_exchange(self) -> None:
        """Body bytes wait for an upstream connection."""

    def resume_reading_for_exchange(self) -> None:
        """An upstream connection was attached."""

    def pause_reading_for_backpressure(self) -> None:
        """The upstream's write buffer is full."""

    def resume_reading_for_backpressure(self) -> None:
        """The upstream drained its write buffer."""
