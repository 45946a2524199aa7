"""The WebSocket test client itself (`test_api_support.wss_connect`): a server that never answers
the upgrade request fails the handshake after the open timeout instead of hanging the suite."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trustme

from tests.e2e.server.test_api_support import SerializedTLSSocket, wss_connect
from tests.support.net import wait_until


@dataclass
class SilentTLSServer:
    """Completes the TLS handshake (TLS 1.3, with session tickets), records what the client
    sends, and never answers."""

    port: int
    client_context: ssl.SSLContext
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
def silent_tls_server() -> Iterator[SilentTLSServer]:
    """A one-connection TLS listener on 127.0.0.1 that reads the request and stays silent."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    listener = socket.create_server(("127.0.0.1", 0))
    silent = SilentTLSServer(listener.getsockname()[1], client_context)
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        with server_context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                silent.received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield silent
    listener.close()
    for conn in accepted:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)  # wakes the thread's recv (close would not)
        conn.close()
    thread.join(timeout=10)


def test_unanswered_handshake_times_out_and_leaves_no_thread(
    silent_tls_server: SilentTLSServer,
) -> None:
    """The upgrade request reaches the server; with no answer, wss_connect raises TimeoutError
    and its reader thread is gone (the old client could wait minutes here)."""
    before = set(threading.enumerate())
    with pytest.raises(TimeoutError):
        wss_connect(silent_tls_server.port, "/v3/subscribe", silent_tls_server.client_context,
                    open_timeout=1)
    request = b"".join(silent_tls_server.received)
    assert request.startswith(b"GET /v3/subscribe HTTP/1.1\r\n")
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_closing_ends_a_reader_waiting_for_data(silent_tls_server: SilentTLSServer) -> None:
    """Closing the socket from another thread ends a recv() that waits for data (websockets
    relies on this to stop its reader thread)."""
    raw = socket.create_connection(("127.0.0.1", silent_tls_server.port), timeout=10)
    tls = SerializedTLSSocket(
        silent_tls_server.client_context.wrap_socket(raw, server_hostname="127.0.0.1")
    )
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(tls.recv(1024))
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    tls.sendall(b"ping")
    wait_until(lambda: silent_tls_server.received, timeout=10, what="the server to read")
    tls.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], OSError | ValueError)
