"""The server's two listeners: plain HTTP and HTTPS, two uvicorn servers in one event loop.

Both serve the same ASGI app (uvicorn with httptools and the sans-I/O websockets protocol; the
event loop is uvloop's, chosen by the runtime). uvicorn's proxy-header handling is off: the app
reads `X-Forwarded-*` itself (`corral.server.https`). The HTTPS listener uses the SSLContext the
certificate manager owns, so SNI learning and renewals take effect without a restart.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger("corral.server.listeners")

KEEP_ALIVE_SECONDS = 90
"""Idle keep-alive connections stay open this long; longer than a load balancer's upstream pool
idle time, so the balancer (not the server) closes them and never sends into a closing socket."""
GRACEFUL_SHUTDOWN_SECONDS = 10
"""On stop, in-flight requests get this long to finish before their tasks are cancelled."""
BACKLOG = 2048


class ListenError(Exception):
    """A listener could not be opened; the message names the address and the fix."""


@dataclass(frozen=True)
class ListenAddresses:
    """Where the listeners bind."""

    bind_address: str = "0.0.0.0"
    http_port: int = 80
    https_port: int = 443


def bind_socket(address: str, port: int, flag: str) -> socket.socket:
    """A listening TCP socket on address:port; ListenError says what to do when it fails."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        shown = f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"
        if exc.errno == errno.EADDRINUSE:
            fix = f"stop whatever listens there or choose another {flag}"
        elif exc.errno == errno.EACCES:
            fix = f"ports below 1024 need root or CAP_NET_BIND_SERVICE; or choose another {flag}"
        elif exc.errno == errno.EADDRNOTAVAIL:
            fix = "this host has no such address; check --bind-address"
        else:
            fix = f"check --bind-address and {flag}"
        raise ListenError(f"cannot listen on {shown}: {exc.strerror}: {fix}") from None
    sock.setblocking(False)
    return sock


def _config(app: ASGIApp, ssl_context: ssl.SSLContext | None) -> uvicorn.Config:
    def use_our_context(config: uvicorn.Config, default: object) -> ssl.SSLContext:
        assert ssl_context is not None
        return ssl_context

    return uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        ws="websockets-sansio",
        lifespan="off",
        interface="asgi3",
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        backlog=BACKLOG,
        ssl_context_factory=use_our_context if ssl_context is not None else None,
    )


class Listeners:
    """The HTTP and HTTPS listeners: `bind()` takes both ports (or neither) before the slow parts
    of start-up run, `start()` serves the app on them, `stop()` drains them."""

    def __init__(self, where: ListenAddresses) -> None:
        self.where = where
        self._sockets: list[socket.socket] = []
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.ports: tuple[int, int] = (where.http_port, where.https_port)

    def bind(self) -> None:
        """Bind both ports; ListenError (and nothing bound) if either fails."""
        http = bind_socket(self.where.bind_address, self.where.http_port, "--http-listen-port")
        try:
            https = bind_socket(
                self.where.bind_address, self.where.https_port, "--https-listen-port"
            )
        except ListenError:
            http.close()
            raise
        self._sockets = [http, https]
        self.ports = (http.getsockname()[1], https.getsockname()[1])

    def close(self) -> None:
        """Release bound sockets that were never served (start-up failed after bind())."""
        if not self._servers:
            for sock in self._sockets:
                sock.close()
            self._sockets = []

    async def start(self, app: ASGIApp, ssl_context: ssl.SSLContext) -> None:
        """Serve `app` on the bound sockets: plain HTTP, and HTTPS with `ssl_context`."""
        if not self._sockets:
            self.bind()
        self._servers = [
            uvicorn.Server(_config(app, None)),
            uvicorn.Server(_config(app, ssl_context)),
        ]
        for server, sock in zip(self._servers, self._sockets, strict=True):
            self._tasks.append(asyncio.create_task(server._serve(sockets=[sock])))
        while not all(server.started for server in self._servers):
            for task in self._tasks:
                if task.done():
                    task.result()  # re-raise a start-up failure
                    raise ListenError("a listener stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self, *, force: bool = False) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace period), close."""
        for server in self._servers:
            server.should_exit = True
            server.force_exit = force
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def force(self) -> None:
        """Give up waiting for in-flight requests (a second Ctrl-C)."""
        for server in self._servers:
            server.force_exit = True
