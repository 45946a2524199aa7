"""TLS transports on non-blocking `ssl.SSLSocket`s: OpenSSL reads and writes the socket itself
(`tls_listener` accepts the connections and starts one per connection).

uvloop's own TLS transport runs OpenSSL on memory BIOs: each read goes socket → a 256 KiB
buffer of the transport's → the incoming BIO → `SSLObject.read` (called until it raises
`SSLWantReadError`), each write `SSLObject.write` → the outgoing BIO → the socket, and every
connection keeps that buffer and both BIOs. Measured on this machine with a fresh process
holding 2,000 idle TLS connections and nothing else, that costs 24.9 KiB per connection; a
non-blocking `SSLSocket` per connection costs 15.7 KiB (nginx: about 12). Here the event loop
only says when the socket is readable or writable (`add_reader`/`add_writer`), and
`SSLSocket.recv`/`send` do the rest in OpenSSL.

What the proxy's connections see is an `asyncio.Transport`: `write` (buffered, with
`pause_writing`/`resume_writing` past the high-water mark), `close` (after the buffer is
written, with a close_notify), `abort`, `pause_reading`/`resume_reading`, `set_protocol`, and
`get_extra_info("peername" | "sockname" | "ssl_object" | "socket")` — the `ssl_object` being
the `SSLSocket`, which answers `selected_alpn_protocol()` like uvloop's `SSLObject`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Final

READ_SIZE: Final = 64 * 1024
RECORD_PLAINTEXT_BYTES: Final = 16 * 1024  # the most one TLS record carries
READS_PER_WAKEUP: Final = 4  # then back to the loop (it calls again while the socket has data)
CLOSE_TIMEOUT_S: Final = 30.0  # a closing connection whose peer reads nothing is dropped after this
LINGER_S: Final = 5.0  # after our FIN, what the peer still sends is read and dropped this long
DEFAULT_HIGH_WATER_BYTES: Final = 64 * 1024

ProtocolFactory = Callable[[], asyncio.Protocol]
_READ_BUFFER: Final = bytearray(READ_SIZE)  # one event loop per process: one read at a time
_READ_VIEW: Final = memoryview(_READ_BUFFER)


class HandshakeCount:
    """How many accepted connections are still in their TLS handshake (they have no protocol
    yet, so a draining worker would not otherwise know they exist)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class TlsTransport(asyncio.Transport):
    """One TLS connection: the handshake, then bytes between the socket and a protocol."""

    __slots__ = (
        "_closing",
        "_factory",
        "_fd",
        "_handshakes",
        "_high",
        "_loop",
        "_lost",
        "_peer",
        "_pending",
        "_protocol",
        "_queue",
        "_reader",
        "_reading",
        "_size",
        "_sock",
        "_ssl",
        "_timeout",
        "_write_paused",
        "_writer",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: ssl.SSLSocket,
        peer: Any,
        factory: ProtocolFactory,
        handshake_timeout: float,
        handshakes: HandshakeCount | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._peer = peer
        self._factory = factory
        self._protocol: asyncio.Protocol | None = None
        self._ssl: Any = None  # the SSLSocket's _ssl._SSLSocket, once the handshake is done
        self._pending: bytes | None = None  # a send OpenSSL must be given again, unchanged
        self._queue: deque[bytes] = deque()
        self._size = 0  # bytes in _pending and _queue
        self._high = DEFAULT_HIGH_WATER_BYTES
        self._write_paused = False  # the protocol was told to stop writing
        self._reading = True  # the protocol wants data
        self._reader = False  # registered with the loop
        self._writer = False
        self._closing = False
        self._lost = False
        self._handshakes = handshakes  # counted in until the handshake ends, either way
        if handshakes is not None:
            handshakes.value += 1
        self._timeout: asyncio.TimerHandle | None = loop.call_later(
            handshake_timeout, self._handshake_expired
        )
        self._set_reader(self._handshake)

    # -- the loop's side -------------------------------------------------------------------
    def _set_reader(self, callback: Callable[[], None]) -> None:
        self._loop.add_reader(self._fd, callback)
        self._reader = True

    def _drop_reader(self) -> None:
        if self._reader:
            self._reader = False
            self._loop.remove_reader(self._fd)

    def _set_writer(self, callback: Callable[[], None]) -> None:
        if not self._writer:
            self._writer = True
            self._loop.add_writer(self._fd, callback)

    def _drop_writer(self) -> None:
        if self._writer:
            self._writer = False
            self._loop.remove_writer(self._fd)

    # -- handshake -------------------------------------------------------------------------
    def _handshake(self) -> None:
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._drop_writer()
            return
        except ssl.SSLWantWriteError:
            self._set_writer(self._handshake)
            return
        except (ssl.SSLError, OSError) as exc:
            self._force_close(exc)
            return
        self._drop_writer()
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self._handshake_ended()
        self._set_reader(self._read_ready)
        # `SSLSocket.recv`/`send` wrap the C object's `read`/`write` in three Python calls
        # each; the hot path calls the C object itself (the same errors come out of it).
        self._ssl = getattr(self._sock, "_sslobj", None)
        protocol = self._protocol = self._factory()
        protocol.connection_made(self)
        if not self._closing and self._sock.pending():
            self._loop.call_soon(self._read_ready)

    def _handshake_ended(self) -> None:
        handshakes, self._handshakes = self._handshakes, None
        if handshakes is not None:
            handshakes.value -= 1

    def _handshake_expired(self) -> None:
        self._timeout = None
        if self._protocol is None:
            self._force_close(TimeoutError("TLS handshake timed out"))

    # -- reading ---------------------------------------------------------------------------
    def _read_ready(self) -> None:
        protocol = self._protocol
        tls = self._ssl
        for _ in range(READS_PER_WAKEUP):
            if not self._reading or self._closing or protocol is None:
                return
            try:
                # into one buffer shared by every connection, then copied at its length: no
                # 64 KiB allocation (and shrink) per read
                size = tls.read(READ_SIZE, _READ_BUFFER) if tls is not None else 0
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLWantWriteError:  # renegotiation is off; wait for the socket anyway
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                size = 0
            except (ssl.SSLError, OSError) as exc:
                self._force_close(exc)
                return
            if not size:
                self._eof()
                return
            data = bytes(_READ_VIEW[:size])
            protocol.data_received(data)
            protocol = self._protocol  # set_protocol may have switched it (ALPN h2)
            if size < RECORD_PLAINTEXT_BYTES and not tls.pending():
                return  # the socket is most likely empty: the loop says when it is not

    def _eof(self) -> None:
        self._drop_reader()
        self._reading = False
        protocol = self._protocol
        keep_open = protocol.eof_received() if protocol is not None else False
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        """Stop delivering data (the socket is not read meanwhile)."""
        if self._reading and not self._closing:
            self._reading = False
            self._drop_reader()

    def resume_reading(self) -> None:
        """Deliver data again."""
        if self._reading or self._closing or self._protocol is None:
            return
        self._reading = True
        self._set_reader(self._read_ready)
        if self._sock.pending():  # decrypted bytes the loop cannot see
            self._loop.call_soon(self._read_ready)

    def is_reading(self) -> bool:
        """Whether data is being delivered."""
        return self._reading and not self._closing

    # -- writing ---------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data` now if the socket takes it, else keep it until it does."""
        if self._closing or self._lost or not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._pending is not None or self._queue:
            self._queue.append(data)
            self._size += len(data)
            self._check_high()
            return
        try:
            self._ssl.write(data)  # all of it, or nothing to the caller (no partial writes)
            return
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            self._pending = data
            self._size += len(data)
        except (ssl.SSLError, OSError) as exc:
            self._force_close(exc)
            return
        self._set_writer(self._write_ready)
        self._check_high()

    def _write_ready(self) -> None:
        while True:
            data = self._pending
            if data is None:
                if not self._queue:
                    break
                data = self._queue.popleft() if len(self._queue) == 1 else b"".join(self._queue)
                self._queue.clear()
            try:
                self._ssl.write(data)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                self._pending = data  # OpenSSL wants the same buffer again
                return
            except (ssl.SSLError, OSError) as exc:
                self._force_close(exc)
                return
            self._pending = None
            self._size -= len(data)
        self._size = 0
        self._drop_writer()
        if self._write_paused and self._protocol is not None:
            self._write_paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._shutdown()

    def _check_high(self) -> None:
        if not self._write_paused and self._size > self._high and self._protocol is not None:
            self._write_paused = True
            self._protocol.pause_writing()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """The buffered size past which the protocol is asked to pause writing (it is told to
        resume once everything is written)."""
        self._high = DEFAULT_HIGH_WATER_BYTES if high is None else high

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return self._size

    def can_write_eof(self) -> bool:
        """TLS has no half-close here."""
        return False

    def write_eof(self) -> None:
        """Not supported on TLS (see can_write_eof)."""
        raise NotImplementedError("TLS connections cannot be half-closed")

    # -- closing ---------------------------------------------------------------------------
    def is_closing(self) -> bool:
        """Whether close() or abort() was called (or the connection broke)."""
        return self._closing

    def close(self) -> None:
        """Close once the buffered data is written, with a TLS close_notify."""
        if self._closing:
            return
        self._closing = True
        self._drop_reader()
        if not self._size:
            self._shutdown()
        elif self._timeout is None:
            self._timeout = self._loop.call_later(CLOSE_TIMEOUT_S, self._close_expired)

    def _close_expired(self) -> None:
        self._timeout = None
        self._force_close(TimeoutError("the peer read nothing while the connection closed"))

    def abort(self) -> None:
        """Close at once; buffered data is lost."""
        self._force_close(None)

    def _shutdown(self) -> None:
        """close_notify and FIN, then read and drop what the peer still sends until it closes
        (NGINX's lingering close): closing a socket with unread data makes the kernel send a
        reset, which can destroy our last bytes (an HTTP/2 GOAWAY, a 400) before the peer
        reads them."""
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self._sock.unwrap()  # sends close_notify; the peer's is not waited for
        try:
            self._sock.shutdown(socket.SHUT_WR)  # leaves TLS: the socket is plain from here
        except OSError:
            self._force_close(None)
            return
        self._drop_writer()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            self._loop.call_soon(protocol.connection_lost, None)
        self._ssl = None
        if self._timeout is not None:
            self._timeout.cancel()
        self._timeout = self._loop.call_later(LINGER_S, self._force_close, None)
        self._set_reader(self._linger)

    def _linger(self) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = self._closing = True
        self._handshake_ended()
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self._drop_reader()
        self._drop_writer()
        self._pending = None
        self._queue.clear()
        self._size = 0
        self._ssl = None
        self._sock.close()
        # The protocol holds this transport and the transport its protocol: let go of it, so
        # neither waits for the cycle collector (it runs rarely in a worker).
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            error = exc if isinstance(exc, Exception) else None
            self._loop.call_soon(protocol.connection_lost, error)

    # -- the rest of the Transport interface ---------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """peername, sockname, ssl_object (the SSLSocket) and socket."""
        if name == "peername":
            return self._peer
        if name == "ssl_object" or name == "socket":
            return self._sock
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the connection to another protocol (HTTP/2 after ALPN)."""
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol receiving the data."""
        assert self._protocol is not None
        return self._protocol

