"""Client connection handling in `corral lb`: keep-alive, pipelining, timeouts, workers."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.e2e.lb.clients import (
    get_request,
    https_client,
    plain_connect,
    read_head,
    read_response,
    read_until_closed,
    tls_connect,
)
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import SERVER_NAME, Backend, Certs, LbProcess, lb_config
from tests.support.net import wait_until

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def backend(module_backends: StartBackends) -> Backend:
    return module_backends(1)[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, backend: Backend, module_start_lb: StartLb) -> LbProcess:
    return module_start_lb(lb_config(certs, [backend]))


def test_pipelined_requests_answered_in_order(certs: Certs, lb: LbProcess) -> None:
    """Three requests sent back to back on one connection get three responses, in order."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(b"".join(get_request(f"/status/{code}") for code in (201, 202, 203)))
        statuses = [read_response(sock).status for _ in range(3)]
    assert statuses == [201, 202, 203]


def test_head_response_keeps_connection_usable(certs: Certs, lb: LbProcess) -> None:
    """A HEAD answer (Content-Length, no body) is followed by a correct next response."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        head, leftover = read_head(sock)
        assert head.status == 200 and leftover == b""
        sock.sendall(get_request("/status/202"))
        assert read_response(sock).status == 202


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_status_keeps_connection_usable(certs: Certs, lb: LbProcess, code: int) -> None:
    """204 and 304 responses carry no body; the next request on the connection works."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request(f"/status/{code}") + get_request("/status/200"))
        first, leftover = read_head(sock)
        assert first.status == code
        assert leftover.startswith(b"HTTP/1.1 200") or leftover == b""
        if not leftover:
            assert read_response(sock).status == 200


def test_client_connection_close_honoured(certs: Certs, lb: LbProcess) -> None:
    """A request with Connection: close gets Connection: close and the lb closes after it."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/status/200", extra=["Connection: close"]))
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"\r\nconnection: close\r\n" in data.split(b"\r\n\r\n")[0].lower() + b"\r\n"
    assert closed


def test_http_1_0_connection_closed_after_response(certs: Certs, lb: LbProcess) -> None:
    """An HTTP/1.0 request without keep-alive is answered and the connection closed."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(b"GET /status/200 HTTP/1.0\r\nHost: lb.test\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.")
    assert b" 200 " in data.split(b"\r\n")[0]
    assert closed


def test_idle_keepalive_connection_closed_after_keepalive_timeout(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """An idle client connection is closed after keepalive_timeout (1s)."""
    lb = start_lb(lb_config(certs, [backend], keepalive_timeout="1s"))
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/status/200"))
        assert read_response(sock).status == 200
        data, closed = read_until_closed(sock, timeout=20)
    assert closed and data == b""


def test_long_url_414(certs: Certs, backend: Backend, start_lb: StartLb) -> None:
    """A request target larger than max_header_size → 414."""
    lb = start_lb(lb_config(certs, [backend], max_header_size="4KiB"))
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/echo?" + "q" * 8192))
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 414"), data[:100]


def test_client_not_reading_closed_after_send_timeout(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """A client that stops reading a big response is disconnected after send_timeout."""
    lb = start_lb(lb_config(certs, [backend], server={"send_timeout": "1s"}))
    size = 200 * MiB
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request(f"/bytes/{size}"))
        head, received_body = read_head(sock)
        assert head.status == 200
        time.sleep(3)  # not reading is the behaviour under test
        rest, closed = read_until_closed(sock, timeout=30)
    assert closed
    assert len(received_body) + len(rest) < size


def test_redirect_status_configurable(certs: Certs, backend: Backend, start_lb: StartLb) -> None:
    """redirect_status: 308 answers 308 with the same Location."""
    config = lb_config(certs, [backend], redirect=True)
    config["servers"][1]["redirect_status"] = 308
    lb = start_lb(config)
    with plain_connect(lb.ports[1]) as sock:
        sock.sendall(get_request("/p?q=1"))
        response = read_response(sock)
    assert response.status == 308
    assert response.header("location") == f"https://{SERVER_NAME}/p?q=1"


def test_several_workers_share_the_listener(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """worker_processes: 2 runs two workers that both serve; SIGTERM leaves no process behind."""
    lb = start_lb(lb_config(certs, [backend], worker_processes=2))
    root = psutil.Process(lb.process.pid)
    workers = wait_until(lambda: len(kids := root.children(recursive=True)) >= 2 and kids)
    assert workers
    for _ in range(20):
        with https_client(certs, lb.port) as client:
            assert client.get("/status/200").status_code == 200
    lb.process.signal(signal.SIGTERM)
    assert lb.process.proc.wait(timeout=30) == 0
    wait_until(lambda: not any(w.is_running() and w.status() != "zombie" for w in workers))


def test_sigterm_stops_gracefully_and_announces_listeners(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """The lb prints a 'listening on' line per listener and exits 0 on SIGTERM."""
    lb = start_lb(lb_config(certs, [backend], redirect=True))
    announced = [
        f"listening on https://127.0.0.1:{lb.ports[0]} (server {SERVER_NAME})",
        f"listening on http://127.0.0.1:{lb.ports[1]}",
    ]
    wait_until(lambda: all(line in lb.output() for line in announced), timeout=20)
    lb.process.signal(signal.SIGTERM)
    assert lb.process.proc.wait(timeout=30) == 0


def _handshakes_without_request(certs: Certs, port: int, count: int) -> None:
    context = certs.client_context()
    for _ in range(count):
        with tls_connect(certs, port) as sock:
            assert sock.version() is not None
    del context


def test_connections_closed_without_a_request_do_not_leak_memory(
    certs: Certs, lb: LbProcess
) -> None:
    """2,000 TLS connections that close right after the handshake leave the lb's memory flat
    (each used to keep ~10 KiB alive: its parser and the connection held each other)."""
    _handshakes_without_request(certs, lb.port, 300)  # allocator and caches settle
    with https_client(certs, lb.port) as client:
        assert client.get("/status/200").status_code == 200
    baseline = lb.rss()
    _handshakes_without_request(certs, lb.port, 2000)
    with https_client(certs, lb.port) as client:
        assert client.get("/status/200").status_code == 200
    growth = lb.rss() - baseline
    assert growth < 6 * MiB, f"lb grew by {growth / MiB:.1f} MiB over 2,000 closed connections"
