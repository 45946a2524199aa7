"""Real clients for the lb tests: raw TLS sockets, curl, openssl s_client and httpx."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tests.e2e.lb.harness import SERVER_NAME, Certs

IO_TIMEOUT = 30.0


def tls_connect(
    certs: Certs, port: int, server_name: str | None = SERVER_NAME, timeout: float = IO_TIMEOUT
) -> ssl.SSLSocket:
    """A verified TLS connection to 127.0.0.1:port with SNI `server_name`."""
    context = certs.client_context()
    if server_name is None:
        context.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def plain_connect(port: int, timeout: float = IO_TIMEOUT) -> socket.socket:
    """A plain TCP connection to 127.0.0.1:port."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


@dataclass
class RawResponse:
    """A response read off a socket: status line, headers, body bytes, and whether EOF followed."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    closed: bool

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


def read_until_closed(sock: socket.socket, timeout: float = IO_TIMEOUT) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes; (data, True) or (data, False) on timeout."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks), True
            chunks.append(data)
    except TimeoutError:
        return b"".join(chunks), False
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return b"".join(chunks), True


def parse_response(data: bytes, closed: bool) -> RawResponse:
    """Parse one HTTP/1.x response (head + Content-Length body) from raw bytes."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data[:400]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, *reason = lines[0].split(" ", 2)
    assert version.startswith("HTTP/1."), f"not an HTTP/1.x status line: {lines[0]!r}"
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    response = RawResponse(int(status), reason[0] if reason else "", headers, rest, closed)
    length = response.header("content-length")
    if length is not None:
        response.body = rest[: int(length)]
    return response


def exchange(sock: socket.socket, request: bytes, timeout: float = IO_TIMEOUT) -> RawResponse:
    """Send raw bytes, read until the peer closes (or timeout), parse the first response."""
    sock.sendall(request)
    data, closed = read_until_closed(sock, timeout)
    return parse_response(data, closed)


def tls_exchange(certs: Certs, port: int, request: bytes) -> RawResponse:
    """Send raw bytes on a fresh TLS connection and read the response until the lb closes."""
    with tls_connect(certs, port) as sock:
        return exchange(sock, request)


def read_head(sock: socket.socket, timeout: float = IO_TIMEOUT) -> tuple[RawResponse, bytes]:
    """Read one response head; returns it and any bytes that followed the head."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head; got {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    response = parse_response(head + b"\r\n\r\n", closed=False)
    return response, rest


def read_response(sock: socket.socket, timeout: float = IO_TIMEOUT) -> RawResponse:
    """Read one Content-Length framed response from a keep-alive connection."""
    response, rest = read_head(sock, timeout)
    length = int(response.header("content-length") or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a response body"
        rest += chunk
    response.body = rest[:length]
    return response


def announced_close(response: RawResponse) -> bool:
    """True when the response carries Connection: close."""
    return "close" in (response.header("connection") or "").lower()


def get_request(path: str, host: str = SERVER_NAME, extra: Sequence[str] = ()) -> bytes:
    """A minimal HTTP/1.1 GET request as bytes."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def https_client(certs: Certs, port: int, **kwargs: Any) -> httpx.Client:
    """An httpx client to https://localhost:port that trusts the test root."""
    kwargs.setdefault("timeout", IO_TIMEOUT)
    return httpx.Client(
        base_url=f"https://localhost:{port}", verify=certs.client_context(), **kwargs
    )


def echo_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The headers the backend received, from an /echo response (names lower-cased)."""
    assert response.status_code == 200, response.text
    return [(n.lower(), v) for n, v in response.json()["headers"]]


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n == name.lower()]


def curl(
    certs: Certs, port: int, path: str, *args: str, host: str = SERVER_NAME, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """curl https://<host>:port<path>, resolving host to 127.0.0.1 and trusting the test root."""
    argv = ["curl", "-sS", "--cacert", str(certs.ca_pem)]
    argv += ["--resolve", f"{host}:{port}:127.0.0.1", "--max-time", str(int(timeout))]
    argv += [*args, f"https://{host}:{port}{path}"]
    return subprocess.run(argv, capture_output=True, timeout=timeout + 10, check=False)


def s_client(
    certs: Certs, port: int, *args: str, server_name: str = SERVER_NAME
) -> subprocess.CompletedProcess[str]:
    """openssl s_client against 127.0.0.1:port; stdin closed at once."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(certs.ca_pem)]
    argv += ["-servername", server_name, *args]
    return subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False
    )


def echo_json(client: httpx.Client, path: str = "/echo", **kwargs: Any) -> dict[str, Any]:
    """GET an /echo URL and return the backend's JSON."""
    response = client.get(path, **kwargs)
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    result: dict[str, Any] = json.loads(response.content)
    return result


SocketT = TypeVar("SocketT", bound=socket.socket)


@contextlib.contextmanager
def closing_all(socks: list[SocketT]) -> Iterator[list[SocketT]]:
    """Close every socket in the list on exit."""
    try:
        yield socks
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()


def monotonic_deadline(seconds: float) -> float:
    return time.monotonic() + seconds
