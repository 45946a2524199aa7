"""Listening sockets: one per distinct address:port, with its TLS context and router."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from corral.config.lb import LbConfig, Server
from corral.proxy.routing import Router, build_route
from corral.proxy.tls import build_server_context
from corral.proxy.upstream import UpstreamPool

LISTEN_BACKLOG = 4096


@dataclass
class ListenerSpec:
    """What one listening socket serves."""

    address: str
    port: int
    servers: list[Server]

    @property
    def tls(self) -> bool:
        """Whether this listener terminates TLS."""
        return self.servers[0].tls is not None

    def describe(self) -> str:
        """`https://127.0.0.1:8443 (server a.example.com)` for start-up messages."""
        scheme = "https" if self.tls else "http"
        host = f"[{self.address}]" if ":" in self.address else self.address
        names = ", ".join(n for s in self.servers for n in s.names)
        return f"{scheme}://{host}:{self.port} (server {names})"


def group_listeners(config: LbConfig) -> list[ListenerSpec]:
    """Server blocks grouped by the socket they share, in configuration order."""
    specs: dict[tuple[str, int], ListenerSpec] = {}
    for server in config.servers:
        address, port = server.address
        spec = specs.get((address, port))
        if spec is None:
            specs[(address, port)] = ListenerSpec(address, port, [server])
        else:
            spec.servers.append(server)
    return list(specs.values())


def bind(spec: ListenerSpec, *, reuse_port: bool) -> socket.socket:
    """A listening socket for `spec` (SO_REUSEPORT when several workers bind the same port)."""
    family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((spec.address, spec.port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def tls_context(spec: ListenerSpec) -> ssl.SSLContext | None:
    """The listener's SSLContext (None for plain HTTP)."""
    configs = [s.tls for s in spec.servers if s.tls is not None]
    return build_server_context(configs) if configs else None


def router(spec: ListenerSpec, pools: dict[str, UpstreamPool]) -> Router:
    """The listener's host router over its server blocks."""
    return Router([build_route(server, pools) for server in spec.servers])
