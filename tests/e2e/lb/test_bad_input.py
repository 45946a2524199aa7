"""Malformed and hostile input is rejected by `corral lb` without disturbing other clients."""

from __future__ import annotations

import select
import ssl
import time

import pytest

from tests.e2e.lb.clients import (
    closing_all,
    exchange,
    get_request,
    read_response,
    read_until_closed,
    tls_connect,
)
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, LbProcess, lb_config
from tests.support.net import wait_until

HEADER_TIMEOUT = 2.0
HOST = "Host: lb.test"


@pytest.fixture(scope="module")
def backend(module_backends: StartBackends) -> Backend:
    return module_backends(1)[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, backend: Backend, module_start_lb: StartLb) -> LbProcess:
    return module_start_lb(lb_config(certs, [backend]))


def send_raw(certs: Certs, lb: LbProcess, request: bytes) -> tuple[int, bool, str]:
    """Send raw bytes on a fresh TLS connection: (status, closed afterwards, content-type)."""
    with tls_connect(certs, lb.port) as sock:
        response = exchange(sock, request)
    return response.status, response.closed, response.header("content-type") or ""


def send_rejected(
    certs: Certs, lb: LbProcess, backend: Backend, request: bytes
) -> tuple[int, bool, str]:
    """`send_raw`, also asserting that no request reached the backend meanwhile."""
    before = backend.stats()["requests"]
    result = send_raw(certs, lb, request)
    assert backend.stats()["requests"] == before, "a rejected request reached the backend"
    return result


def poll_read(sock: ssl.SSLSocket, timeout: float) -> bytes | None:
    """Application data (b"" on EOF) if any arrives within `timeout`, else None.

    select() alone is not enough on TLS: session tickets make the socket readable without data.
    """
    if not sock.pending() and not select.select([sock], [], [], timeout)[0]:
        return None
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except ssl.SSLWantReadError:
        return None
    except (ConnectionResetError, ssl.SSLError):
        return b""
    finally:
        sock.settimeout(30)


def assert_still_serving(certs: Certs, lb: LbProcess) -> None:
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/status/200"))
        assert read_response(sock).status == 200


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: lb.test\r\n\r\n"


def test_content_length_with_transfer_encoding_rejected(
    certs: Certs, backend: Backend, lb: LbProcess
) -> None:
    """Content-Length + Transfer-Encoding → 400 and close; nothing reaches the backend."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    )
    status, closed, content_type = send_rejected(certs, lb, backend, request)
    assert (status, closed) == (400, True)
    assert content_type.startswith("text/plain")
    assert "/smuggled" not in backend.stats()["paths"]


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5 ;\x00\r\nhello\r\n0\r\n\r\n", b"fffffffffffffffffff\r\n"],
    ids=["not-hex", "nul-in-extension", "overflow"],
)
def test_invalid_chunk_size_rejected(
    certs: Certs, backend: Backend, lb: LbProcess, body: bytes
) -> None:
    """An invalid chunk size line → 400 and close; a request hidden after it is never sent."""
    request = b"POST /upload HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, closed, _ = send_raw(certs, lb, request + body + SMUGGLED)
    assert (status, closed) == (400, True)
    assert "/smuggled" not in backend.stats()["paths"]


def test_obs_fold_rejected(certs: Certs, backend: Backend, lb: LbProcess) -> None:
    """A header continued by obsolete line folding → 400 and close."""
    request = b"GET /echo HTTP/1.1\r\nHost: lb.test\r\nX-Folded: first\r\n second\r\n\r\n"
    status, closed, _ = send_rejected(certs, lb, backend, request)
    assert (status, closed) == (400, True)


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /echo HTTP/1.1 extra",
        b"GARBAGE",
        b"GET /echo HTTX/1.1",
        b"GET /e\x00cho HTTP/1.1",
        b"G@T /echo HTTP/1.1",
    ],
    ids=["extra-token", "garbage", "bad-protocol", "nul-in-target", "bad-method"],
)
def test_bad_request_line_rejected(
    certs: Certs, backend: Backend, lb: LbProcess, request_line: bytes
) -> None:
    """A malformed request line → 400 and close; the backend sees nothing."""
    request = request_line + b"\r\nHost: lb.test\r\n\r\n"
    status, closed, _ = send_rejected(certs, lb, backend, request)
    assert (status, closed) == (400, True)


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"identity"])
def test_unsupported_transfer_encoding_501(
    certs: Certs, backend: Backend, lb: LbProcess, coding: bytes
) -> None:
    """A Transfer-Encoding other than chunked → 501 and close."""
    request = b"POST /upload HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: " + coding
    request += b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    status, closed, _ = send_rejected(certs, lb, backend, request)
    assert (status, closed) == (501, True)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5, 6\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: -5\r\n",
    ],
    ids=["list", "repeated", "negative"],
)
def test_conflicting_content_length_rejected(
    certs: Certs, backend: Backend, lb: LbProcess, headers: bytes
) -> None:
    """An ambiguous or invalid Content-Length → 400 and close."""
    request = b"POST /upload HTTP/1.1\r\nHost: lb.test\r\n" + headers + b"\r\nhello" + SMUGGLED
    status, closed, _ = send_rejected(certs, lb, backend, request)
    assert (status, closed) == (400, True)


@pytest.mark.parametrize(
    "host_lines", [b"", b"Host: lb.test\r\nHost: evil.example\r\n"], ids=["missing", "duplicated"]
)
def test_bad_host_on_http_1_1_rejected(
    certs: Certs, backend: Backend, lb: LbProcess, host_lines: bytes
) -> None:
    """HTTP/1.1 without Host, or with two, → 400."""
    request = b"GET /echo HTTP/1.1\r\n" + host_lines + b"\r\n"
    assert send_rejected(certs, lb, backend, request)[0] == 400


def test_huge_header_431(certs: Certs, backend: Backend, lb: LbProcess) -> None:
    """A header section over max_header_size (32 KiB) → 431, and the lb keeps serving."""
    request = get_request("/echo", extra=["X-Big: " + "a" * 40 * 1024])
    status, closed, _ = send_rejected(certs, lb, backend, request)
    assert (status, closed) == (431, True)
    assert_still_serving(certs, lb)


def test_many_headers_over_limit_431(certs: Certs, lb: LbProcess) -> None:
    """Many small headers adding up past max_header_size → 431."""
    request = get_request("/echo", extra=[f"X-H{i}: {'v' * 100}" for i in range(400)])
    assert send_raw(certs, lb, request)[0] == 431


def test_header_just_under_limit_accepted(certs: Certs, lb: LbProcess) -> None:
    """A 16 KiB header (under max_header_size) is forwarded normally."""
    request = get_request("/echo", extra=["X-Big: " + "a" * 16 * 1024])
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(request)
        assert read_response(sock).status == 200


def test_bad_input_leaves_other_connections_alone(certs: Certs, lb: LbProcess) -> None:
    """A keep-alive connection keeps working while others send garbage and get 400s."""
    with tls_connect(certs, lb.port) as good:
        good.sendall(get_request("/status/200"))
        assert read_response(good).status == 200
        for garbage in (b"\x16\x03\x01\x00\x00\r\n\r\n", b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n"):
            assert send_raw(certs, lb, garbage)[0] == 400
            good.sendall(get_request("/status/200"))
            assert read_response(good).status == 200
    assert lb.process.alive()


# -- slow clients ---------------------------------------------------------------------------


@pytest.fixture
def timeout_lb(certs: Certs, backend: Backend, start_lb: StartLb) -> LbProcess:
    """An lb with a two-second client_header_timeout."""
    return start_lb(lb_config(certs, [backend], client_header_timeout=f"{HEADER_TIMEOUT}s"))


def test_slowloris_head_gets_408_while_others_are_served(
    certs: Certs, timeout_lb: LbProcess
) -> None:
    """An unfinished request head is answered 408 and closed; other clients are served meanwhile."""
    served_meanwhile = 0
    with tls_connect(certs, timeout_lb.port) as slow, tls_connect(certs, timeout_lb.port) as good:
        slow.sendall(b"GET /echo HTTP/1.1\r\nHost: lb.test\r\nX-Partial: ")
        deadline = time.monotonic() + HEADER_TIMEOUT * 10
        while (first := poll_read(slow, 0.1)) is None:  # serve the other client meanwhile
            assert time.monotonic() < deadline, "the unfinished head was never timed out"
            good.sendall(get_request("/status/200"))
            assert read_response(good).status == 200
            served_meanwhile += 1
        rest, closed = read_until_closed(slow)
        data = first + rest
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert closed
    assert served_meanwhile >= 3


def test_trickled_head_times_out(certs: Certs, timeout_lb: LbProcess) -> None:
    """A head trickled one header at a time is still cut off: the timeout covers the whole head."""
    with tls_connect(certs, timeout_lb.port) as slow:
        slow.sendall(b"GET /echo HTTP/1.1\r\nHost: lb.test\r\n")
        deadline = time.monotonic() + HEADER_TIMEOUT * 10
        index = 0
        while (first := poll_read(slow, HEADER_TIMEOUT / 8)) is None:  # the trickle is the test
            assert time.monotonic() < deadline, "a trickled head was allowed to go on forever"
            try:
                slow.sendall(f"X-Trickle-{index}: x\r\n".encode())
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                first = b""
                break
            index += 1
        rest, closed = read_until_closed(slow)
        data = first + rest
    assert closed
    assert not data or data.startswith(b"HTTP/1.1 408"), data[:200]


# -- worker_connections -------------------------------------------------------------------------


def test_worker_connections_bound(certs: Certs, backend: Backend, start_lb: StartLb) -> None:
    """Connections beyond worker_connections are closed; the admitted ones keep working."""
    lb = start_lb(lb_config(certs, [backend], worker_connections=4))
    admitted: list[ssl.SSLSocket] = []
    with closing_all(admitted):
        for _ in range(4):
            sock = tls_connect(certs, lb.port)
            admitted.append(sock)
            sock.sendall(get_request("/status/200"))
            assert read_response(sock).status == 200
        assert extra_connection_refused(certs, lb), "a 5th connection was served"
        for sock in admitted:
            sock.sendall(get_request("/status/200"))
            assert read_response(sock).status == 200
        admitted.pop().close()

        def fresh_connection_served() -> bool:
            with tls_connect(certs, lb.port, timeout=5) as sock:
                sock.sendall(get_request("/status/200"))
                return read_response(sock, timeout=5).status == 200

        wait_until(fresh_connection_served, timeout=20, what="a slot to free up")


def extra_connection_refused(certs: Certs, lb: LbProcess) -> bool:
    """True when a connection over the bound is closed (during the handshake or after)."""
    try:
        with tls_connect(certs, lb.port, timeout=15) as sock:
            sock.sendall(get_request("/status/200"))
            data, closed = read_until_closed(sock, timeout=15)
            return closed and not data.startswith(b"HTTP/1.1 200")
    except TimeoutError:
        return False  # left hanging: neither served nor closed
    except (ssl.SSLError, ConnectionError):
        return True
