"""HSTS (`tls.hsts`) and the response headers a server adds or hides (`add_response_headers`,
`hide_response_headers`), over HTTP/1.1 and HTTP/2, on the upstream's responses and the
proxy's own; never on plain HTTP, and nothing changes on a server without these keys."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.lb.clients import curl, tls_connect
from tests.e2e.lb.harness import OTHER_NAME, SERVER_NAME, Certs
from tests.e2e.lb_tls.stack import (
    ADDED,
    BANNER_PATH,
    DEAD_NAME,
    HSTS_DEAD,
    HSTS_MAIN,
    HSTS_OTHER,
    UPSTREAM_HEADERS,
    OptionsLb,
)

STS = "strict-transport-security"


def head(
    certs: Certs, port: int, path: str, *args: str, host: str = SERVER_NAME
) -> tuple[str, list[tuple[str, str]]]:
    """curl's status line and the response headers (names lower-case, in order)."""
    result = curl(certs, port, path, "-D", "-", "-o", "/dev/null", *args, host=host)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
    return lines[0], [(name.lower(), value) for name, value in headers]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Every value of header `name`."""
    return [value for key, value in headers if key == name.lower()]


@pytest.mark.parametrize(
    ("flag", "status"), [("--http1.1", "HTTP/1.1 200"), ("--http2", "HTTP/2 200")]
)
def test_hsts_added_and_hidden_headers(
    certs: Certs, options_lb: OptionsLb, flag: str, status: str
) -> None:
    """The upstream's Server, X-Powered-By and its own HSTS are gone; the configured HSTS and
    added headers are there, once each; the other headers pass."""
    line, headers = head(certs, options_lb.ports.main, BANNER_PATH, flag)
    assert line.startswith(status)
    assert values(headers, STS) == [HSTS_MAIN]
    for name, value in ADDED.items():
        assert values(headers, name) == [value]
    assert values(headers, "server") == []
    assert values(headers, "x-powered-by") == []
    assert values(headers, "content-type") == ["text/plain"]


def test_proxy_error_carries_hsts_and_added_headers(certs: Certs, options_lb: OptionsLb) -> None:
    """The proxy's own 502 (upstream down) has the server's HSTS and added header too."""
    port = options_lb.ports.main
    line, headers = head(certs, port, "/", "--http1.1", "-H", f"Host: {DEAD_NAME}")
    assert line.startswith("HTTP/1.1 502")
    assert values(headers, STS) == [HSTS_DEAD]
    assert values(headers, "x-dead") == ["yes"]


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_redirect_on_tls_carries_hsts(certs: Certs, options_lb: OptionsLb, flag: str) -> None:
    """A redirect answered on a TLS server (other.test) sends that server's HSTS."""
    line, headers = head(certs, options_lb.ports.main, "/x", flag, host=OTHER_NAME)
    assert " 301" in line
    assert values(headers, "location") == [f"https://{SERVER_NAME}/x"]
    assert values(headers, STS) == [HSTS_OTHER]


def plain_head(port: int, path: str) -> str:
    """The response head of http://lb.test:port<path> (resolved to 127.0.0.1)."""
    argv = ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--max-time", "30"]
    argv += ["--resolve", f"{SERVER_NAME}:{port}:127.0.0.1", f"http://{SERVER_NAME}:{port}{path}"]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_plain_http_redirect_has_no_hsts(options_lb: OptionsLb) -> None:
    """The port-80-style redirect never sends Strict-Transport-Security (RFC 6797 §7.2)."""
    response = plain_head(options_lb.ports.plain, "/x")
    assert response.startswith("HTTP/1.1 301")
    assert f"Location: https://{SERVER_NAME}/x" in response
    assert STS not in response.lower()


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_server_without_the_keys_passes_headers_unchanged(
    certs: Certs, options_lb: OptionsLb, flag: str
) -> None:
    """No HSTS or header keys: the upstream's Server, X-Powered-By and HSTS reach the client,
    nothing is added."""
    _, headers = head(certs, options_lb.ports.untouched, BANNER_PATH, flag)
    for name, value in UPSTREAM_HEADERS.items():
        assert values(headers, name) == [value]
    for name in ADDED:
        assert values(headers, name) == []


def test_websocket_101_gets_the_header_changes(certs: Certs, options_lb: OptionsLb) -> None:
    """The 101 of a WebSocket upgrade carries the HSTS and added headers too."""
    with tls_connect(certs, options_lb.ports.main) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: lb.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"closed before the 101: {data!r}"
            data += chunk
    response = data.split(b"\r\n\r\n", 1)[0].decode()
    assert response.startswith("HTTP/1.1 101")
    assert f"Strict-Transport-Security: {HSTS_MAIN}" in response
    assert "X-Frame-Options: DENY" in response
