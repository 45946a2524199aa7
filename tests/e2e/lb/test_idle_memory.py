"""What an idle TLS connection costs the lb: its own TLS transport on an `ssl.SSLSocket` keeps
no memory-BIO pair and no 256 KiB read buffer per connection (uvloop's TLS transport costs
about 25 KiB per idle connection on its own; corral lb's about 17)."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.lb.clients import closing_all
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import SERVER_NAME, Certs, lb_config

IDLE_CONNECTIONS = 1000
# Between corral lb's ~17 KiB and the ~25 KiB uvloop's TLS transport costs by itself: RSS moves
# in pages and allocator arenas, so the bound leaves room on both sides.
MAX_KIB_PER_CONNECTION = 22


@pytest.mark.timeout(120)
def test_idle_tls_connections_cost_less_than_uvloop_tls(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """1000 TLS connections that complete the handshake and send nothing add less than 22 KiB
    each to the lb's resident memory, and the lb still answers on another connection."""
    backend = backends(1)[0]
    lb = start_lb(lb_config(certs, [backend], worker_processes=1))
    context = certs.client_context()
    with closing_all([]) as warm:  # one handshake first: the worker's own start-up memory
        raw = socket.create_connection(("127.0.0.1", lb.port), timeout=30)
        warm.append(context.wrap_socket(raw, server_hostname=SERVER_NAME))
    before = lb.rss()
    with closing_all([]) as held:
        for _ in range(IDLE_CONNECTIONS):
            raw = socket.create_connection(("127.0.0.1", lb.port), timeout=30)
            held.append(context.wrap_socket(raw, server_hostname=SERVER_NAME))
        per_connection = (lb.rss() - before) / IDLE_CONNECTIONS / 1024
        assert per_connection < MAX_KIB_PER_CONNECTION, f"{per_connection:.1f} KiB per connection"
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", lb.port), timeout=30),
            server_hostname=SERVER_NAME,
        ) as probe:
            probe.sendall(f"GET /healthz HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode())
            assert probe.recv(65536).startswith(b"HTTP/1.1 200 ")

