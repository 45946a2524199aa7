"""Helpers shared by the v3 API end-to-end tests (no tests here): an httpx client of a real
`corral server` over its HTTPS listener, login, users, and WebSocket connections."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.e2e.lb.harness import Certs, LbProcess, make_certs
from tests.e2e.server.core_harness import CorralServer
from tests.support.net import free_port

LOGIN_PATH = "/v3-public/localProviders/local?action=login"
USER_PASSWORD = "user-password-123"


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(server: CorralServer, token: str | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx client of the server's HTTPS listener (trusting its CA), optionally with a
    Bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.client(base_url=server.https_url, headers=headers, **kwargs)


def login(server: CorralServer, username: str = "admin", password: str | None = None,
          **fields: Any) -> dict[str, Any]:
    """Log in (token response); returns the token resource including `token`."""
    with api(server) as client:
        response = client.post(LOGIN_PATH, json={
            "username": username, "password": password or server.admin_password, **fields
        })
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def admin_token(server: CorralServer) -> str:
    """A fresh admin token."""
    return str(login(server)["token"])


def create_user(server: CorralServer, admin: str, *, is_admin: bool = False,
                **fields: Any) -> tuple[dict[str, Any], str]:
    """A new user (and a token for it): (user resource, token)."""
    username = unique("user")
    with api(server, admin) as client:
        response = client.post("/v3/users", json={
            "username": username, "password": USER_PASSWORD, "admin": is_admin, **fields
        })
    assert response.status_code == 201, response.text
    return response.json(), str(login(server, username, USER_PASSWORD)["token"])


def ws_ssl(server: CorralServer) -> ssl.SSLContext:
    """A client TLS context trusting the server's CA."""
    return ssl.create_default_context(cafile=str(server.ca_path))


#: Seconds for TCP connect + TLS handshake, and again for the WebSocket handshake's answer.
WS_OPEN_TIMEOUT = 10.0
#: Seconds the closing handshake may take before the client drops the connection.
WS_CLOSE_TIMEOUT = 5.0
#: How often a thread waiting for the network re-checks whether the socket was closed.
_POLL_SECONDS = 0.05


class SerializedTLSSocket:
    """A connected TLS socket whose OpenSSL calls never overlap, for websockets' sync client.

    That client reads in a background thread while the caller writes, both on one SSLSocket.
    OpenSSL forbids using one connection from two threads at once, and with TLS 1.3 it really
    breaks: the server's session tickets arrive just after the handshake, and an upgrade request
    written while the reader thread is processing them can vanish (the server receives only the
    TLS handshake; both sides then wait). Here every TLS call holds one lock and the waiting for
    the network happens outside it (non-blocking socket, select), so a reader never holds up a
    writer, and `close()` from another thread ends a waiting reader promptly.
    """

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._closed = False
        self._timeout: float | None = None
        tls.setblocking(False)

    def settimeout(self, timeout: float | None) -> None:
        """Bound later recv/sendall calls (websockets sets this for the closing handshake)."""
        self._timeout = timeout

    def recv(self, size: int) -> bytes:
        """Up to `size` decrypted bytes, waiting for them; b"" at the end of the stream."""
        deadline = self._deadline()
        while True:
            with self._lock:
                self._check_open()
                try:
                    return self._tls.recv(size)
                except ssl.SSLWantReadError:
                    writing = False
                except ssl.SSLWantWriteError:
                    writing = True
            self._wait(writing, deadline)

    def sendall(self, data: bytes) -> None:
        """Send every byte of `data` (retrying with the same bytes, as OpenSSL requires)."""
        deadline = self._deadline()
        sent = 0
        with memoryview(data) as view, view.cast("B") as octets:
            while sent < len(octets):
                with self._lock:
                    self._check_open()
                    try:
                        sent += self._tls.send(octets[sent:])
                        continue
                    except ssl.SSLWantWriteError:
                        writing = True
                    except ssl.SSLWantReadError:
                        writing = False
                self._wait(writing, deadline)

    def shutdown(self, how: int) -> None:
        """Half-close the TCP connection (SSLSocket.shutdown would drop the TLS state the
        reader thread is still using)."""
        with self._lock:
            socket.socket.shutdown(self._tls, how)

    def close(self) -> None:
        """Close the connection; a thread waiting in recv/sendall gets OSError."""
        self._closed = True
        with self._lock:
            self._tls.close()

    def fileno(self) -> int:
        """The TCP socket's descriptor (websockets' reader thread selects on it)."""
        return self._tls.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tls, name)  # family, setsockopt, getsockname, getpeername

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _check_open(self) -> None:
        if self._closed:
            raise OSError("the WebSocket's TLS socket was closed")

    def _wait(self, writing: bool, deadline: float | None) -> None:
        """Wait (without the lock) until the socket is ready, it is closed, or the deadline."""
        wait = _POLL_SECONDS
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            wait = min(wait, left)
        self._check_open()
        fd = [self._tls.fileno()]
        select.select([] if writing else fd, fd if writing else [], [], wait)


def wss_connect(port: int, path: str, context: ssl.SSLContext, *,
                server_hostname: str = "127.0.0.1", open_timeout: float = WS_OPEN_TIMEOUT,
                **kwargs: Any) -> ClientConnection:
    """A WebSocket over TLS to 127.0.0.1:`port` with websockets' sync client, its TLS calls
    serialized (see SerializedTLSSocket): a server that never answers the handshake is a
    TimeoutError after `open_timeout` seconds, never a hang."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=open_timeout)
    try:
        tls = context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    serialized = SerializedTLSSocket(tls)
    try:
        # TLS is already on: websockets must treat the socket as plain, hence ws:// (the Host
        # header is the same, 127.0.0.1:port).
        connection: ClientConnection = connect(
            f"ws://127.0.0.1:{port}{path}",
            sock=cast(socket.socket, serialized),
            open_timeout=open_timeout,
            close_timeout=WS_CLOSE_TIMEOUT,
            **kwargs,
        )
    except BaseException:
        serialized.close()  # websockets closes it on a failed handshake; this covers the rest
        raise
    return connection


def ws_connect(server: CorralServer, path: str, token: str | None,
               **kwargs: Any) -> ClientConnection:
    """A WebSocket to the server's HTTPS listener."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return wss_connect(server.https_port, path, ws_ssl(server), additional_headers=headers,
                       **kwargs)


def receive_json(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next JSON message (fails after `timeout` seconds)."""
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def corral_lb_config(certs: Certs, port: int, upstream_port: int,
                     read_timeout: str = "900s") -> dict[str, Any]:
    """A `corral lb` config: TLS on 127.0.0.1:`port` (lb.test) in front of one server's
    HTTP port, as in Rancher's single-node guide."""
    return {
        "worker_processes": 1,
        "upstreams": {"corral": {"servers": [f"127.0.0.1:{upstream_port}"]}},
        "servers": [{
            "listen": f"127.0.0.1:{port}",
            "server_name": "lb.test",
            "tls": {"certificates": [{"cert": str(certs.main.chain),
                                      "key": str(certs.main.key)}]},
            "proxy_pass": "corral",
            "read_timeout": read_timeout,
        }],
    }


@contextlib.contextmanager
def running_corral_lb(directory: Path, upstream_port: int,
                      read_timeout: str = "900s") -> Iterator[tuple[int, Certs]]:
    """`corral lb` in front of a server until the block ends: (its TLS port, its certs)."""
    certs = make_certs(directory)
    port = free_port()
    lb_dir = directory / "lb"
    lb_dir.mkdir()
    lb = LbProcess(corral_lb_config(certs, port, upstream_port, read_timeout), lb_dir)
    try:
        lb.wait_listening()
        yield port, certs
    finally:
        lb.stop()
        print(f"--- corral lb output ---\n{lb.output()}")
