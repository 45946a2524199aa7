"""Accepting TLS connections: a listening socket in the event loop, and a `TlsTransport` started
for each connection it accepts (the handshake, then the bytes, are the transport's business).

Up to `ACCEPTS_PER_WAKEUP` connections per wakeup; when the process runs out of file
descriptors (or buffers), accepting pauses for `ACCEPT_PAUSE_S` instead of spinning, and each
pause is reported through `note_error`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable
from typing import Final

from corral.proxy.tls_transport import HandshakeCount, ProtocolFactory, TlsTransport

ACCEPTS_PER_WAKEUP: Final = 64
ACCEPT_PAUSE_S: Final = 1.0  # after EMFILE/ENFILE: stop accepting this long
_OUT_OF_FILES: Final = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class TlsListener:
    """Accepts on a listening socket and starts a `TlsTransport` for each connection."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        context: ssl.SSLContext,
        factory: ProtocolFactory,
        *,
        handshake_timeout: float,
        note_error: Callable[[str], None],
        handshakes: HandshakeCount | None = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._context = context
        self._factory = factory
        self._handshake_timeout = handshake_timeout
        self._note_error = note_error
        self.handshakes = handshakes if handshakes is not None else HandshakeCount()
        self._closed = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES:
                    self._note_error(f"accept failed ({exc}); not accepting for a second")
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(ACCEPT_PAUSE_S, self._resume_accepting)
                return
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tls = self._context.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
            except (OSError, ssl.SSLError):
                conn.close()
                continue
            TlsTransport(self._loop, tls, peer, self._factory, self._handshake_timeout,
                         self.handshakes)

    def _resume_accepting(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close this listening socket (a worker's duplicate)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
