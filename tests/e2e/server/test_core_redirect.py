"""The HTTP listener's redirect table against a real server: direct HTTP, HTTPS, and NGINX."""

from __future__ import annotations

import base64
import os
import socket

import pytest

from corral.server.https import UNKNOWN_HOST
from tests.e2e.server.conftest import SHARED_SERVER_URL, StartLb, StartNginx, StartServer
from tests.e2e.server.core_harness import FQDN, CorralServer, curl

USE_HTTPS = "Use HTTPS\n"
PEM_START = "-----BEGIN CERTIFICATE-----"


def https_port_for(port: int) -> int:
    return (port // 1000) * 1000 + 443


# (case, curl arguments, path, expected status, expected Location ("{mapped}" = mapped port of
#  the server's HTTP port) or expected body start)
DIRECT_HTTP: list[tuple[str, list[str], str, int, str]] = [
    ("GET redirects to the mapped port", [], "/cacerts", 302,
     "location=https://127.0.0.1:{mapped}/cacerts"),
    ("query kept, 8080 maps to 8443", ["-H", f"Host: {FQDN}:8080"], "/cacerts?x=1&y=%20", 302,
     f"location=https://{FQDN}:8443/cacerts?x=1&y=%20"),
    ("HEAD redirects", ["-I", "-H", "Host: localhost"], "/cacerts", 302,
     "location=https://localhost/cacerts"),
    ("no port in Host gives no port", ["-H", "Host: 127.0.0.1"], "/v3/settings", 302,
     "location=https://127.0.0.1/v3/settings"),
    ("ipv6 Host", ["-H", "Host: [::1]:8080"], "/cacerts", 302,
     "location=https://[::1]:8443/cacerts"),
    ("POST refused", ["-X", "POST", "-d", "x"], "/cacerts", 400, "body=" + USE_HTTPS),
    ("PUT refused", ["-X", "PUT", "-d", "x"], "/v3/settings/server-url", 400, "body=" + USE_HTTPS),
    ("DELETE refused", ["-X", "DELETE"], "/v3/tokens/x", 400, "body=" + USE_HTTPS),
    ("X-Forwarded-Proto https passes", ["-H", "X-Forwarded-Proto: https"], "/cacerts", 200,
     "body=" + PEM_START),
    ("X-Forwarded-Proto wss passes", ["-H", "X-Forwarded-Proto: wss"], "/cacerts", 200,
     "body=" + PEM_START),
    ("X-Forwarded-Proto http redirects", ["-H", "X-Forwarded-Proto: http"], "/cacerts", 302,
     "location=https://127.0.0.1:{mapped}/cacerts"),
    ("POST with X-Forwarded-Proto https reaches the app", ["-X", "POST",
     "-H", "X-Forwarded-Proto: https"], "/cacerts", 405, ""),
    ("/ping passes", [], "/ping", 200, "body=pong"),
    ("POST /ping reaches the app", ["-X", "POST"], "/ping", 405, ""),
    ("/healthz passes", [], "/healthz", 200, "body=ok"),
    ("/healthz?verbose passes", [], "/healthz?verbose", 200, "body=[+]ping ok"),
    ("/.well-known/ passes", [], "/.well-known/acme-challenge/t0k3n", 404, ""),
    ("forged Host goes to server-url", ["-H", "Host: evil.test"], "/cacerts?a=b", 302,
     f"location={SHARED_SERVER_URL}/cacerts?a=b"),
    ("forged Host with port goes to server-url", ["-H", "Host: evil.test:8080"], "/x", 302,
     f"location={SHARED_SERVER_URL}/x"),
    ("missing Host goes to server-url", ["-H", "Host:"], "/cacerts", 302,
     f"location={SHARED_SERVER_URL}/cacerts"),
    ("server-url host is served", ["-H", f"Host: {FQDN}"], "/cacerts", 302,
     f"location=https://{FQDN}/cacerts"),
]


def check(response_status: int, headers: dict[str, str], body: str, status: int,
          expect: str, mapped: int) -> None:
    assert response_status == status, (headers, body)
    if expect.startswith("location="):
        assert headers.get("location") == expect[len("location="):].format(mapped=mapped)
    elif expect.startswith("body="):
        assert body.startswith(expect[len("body="):]), body


@pytest.mark.parametrize(("args", "path", "status", "expect"),
                         [case[1:] for case in DIRECT_HTTP], ids=[c[0] for c in DIRECT_HTTP])
def test_direct_http(shared_corral_server: CorralServer, args: list[str], path: str,
                     status: int, expect: str) -> None:
    """Plain HTTP straight to the server follows the redirect table."""
    server = shared_corral_server
    response = curl(*args, f"{server.http_url}{path}")
    check(response.status, response.headers, response.body, status, expect,
          https_port_for(server.http_port))


def test_own_host_name_is_served(shared_corral_server: CorralServer) -> None:
    """The machine's own host name is redirected to itself, not to the server-url."""
    name = socket.gethostname().lower()
    response = curl("-H", f"Host: {name}:80", f"{shared_corral_server.http_url}/cacerts")
    assert response.status == 302
    assert response.headers["location"] == f"https://{name}:443/cacerts"


def test_forged_host_without_server_url_is_refused(start_corral_server: StartServer) -> None:
    """With no server-url, a Host the server does not serve gets 400, never a redirect."""
    server = start_corral_server()
    response = curl("-H", "Host: evil.test", f"{server.http_url}/cacerts")
    assert response.status == 400
    assert response.body == UNKNOWN_HOST + "\n"
    assert "location" not in response.headers
    served = curl("-H", "Host: localhost:8080", f"{server.http_url}/cacerts")
    assert served.headers["location"] == "https://localhost:8443/cacerts"


HTTPS_CASES: list[tuple[str, list[str], str, int, str]] = [
    ("GET passes", [], "/cacerts", 200, "body=" + PEM_START),
    ("POST reaches the app", ["-X", "POST", "-d", "x"], "/cacerts", 405, ""),
    ("forged Host passes over TLS", ["-H", "Host: evil.test"], "/cacerts", 200,
     "body=" + PEM_START),
    ("X-Forwarded-Proto http does not matter over TLS", ["-H", "X-Forwarded-Proto: http"],
     "/cacerts", 200, "body=" + PEM_START),
    ("/ping", [], "/ping", 200, "body=pong"),
]


@pytest.mark.parametrize(("args", "path", "status", "expect"),
                         [case[1:] for case in HTTPS_CASES], ids=[c[0] for c in HTTPS_CASES])
def test_direct_https(shared_corral_server: CorralServer, args: list[str], path: str,
                      status: int, expect: str) -> None:
    """Over TLS every request passes through to the application."""
    server = shared_corral_server
    response = curl("--cacert", str(server.ca_path), *args,
                    f"https://localhost:{server.https_port}{path}")
    check(response.status, response.headers, response.body, status, expect, 0)


def websocket_handshake(port: int, path: str, extra_headers: str = "") -> str:
    """Send a WebSocket upgrade request over plain HTTP; return the status line."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra_headers}\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def test_websocket_over_plain_http_is_redirected(shared_corral_server: CorralServer) -> None:
    """A WebSocket handshake over plain HTTP without X-Forwarded-Proto gets the 302."""
    status = websocket_handshake(shared_corral_server.http_port, "/v3/subscribe")
    assert status.split(" ")[1] == "302", status


def test_websocket_with_forwarded_wss_passes(shared_corral_server: CorralServer) -> None:
    """With X-Forwarded-Proto: wss the handshake reaches the application (no 302)."""
    status = websocket_handshake(
        shared_corral_server.http_port, "/v3/subscribe", "X-Forwarded-Proto: wss\r\n"
    )
    assert status.split(" ")[1] not in ("302", "400"), status


# -- through NGINX running Rancher's example NGINX configuration ------------------------------


def test_nginx_https_passes_through(shared_corral_server: CorralServer,
                                    rancher_example_nginx: StartNginx) -> None:
    """Through the example's HTTPS server NGINX sends X-Forwarded-Proto https: no redirect,
    POST reaches the app, and the body is the server's CA."""
    nginx = rancher_example_nginx(shared_corral_server)
    url = f"https://{FQDN}:{nginx.tls_port}"
    base = [*nginx.resolve(nginx.tls_port), "--cacert", str(nginx.ca)]
    got = curl(*base, f"{url}/cacerts")
    assert got.status == 200
    assert got.body == shared_corral_server.ca_path.read_text()
    assert got.http_version == "HTTP/2"  # the example's `listen 443 ssl http2`
    assert curl(*base, "-X", "POST", "-d", "x", f"{url}/cacerts").status == 405
    assert curl(*base, f"{url}/ping").body == "pong"
    assert curl(*base, f"{url}/healthz").body == "ok"


def test_nginx_port_80_redirects_itself(shared_corral_server: CorralServer,
                                        rancher_example_nginx: StartNginx) -> None:
    """The example's port-80 server answers 301 https://FQDN<uri> without asking the server."""
    nginx = rancher_example_nginx(shared_corral_server)
    got = curl(*nginx.resolve(nginx.redirect_port),
               f"http://{FQDN}:{nginx.redirect_port}/v3/settings?x=1")
    assert got.status == 301
    assert got.headers["location"] == f"https://{FQDN}/v3/settings?x=1"


NGINX_PLAIN: list[tuple[str, list[str], str, int, str]] = [
    ("GET redirects (Host without port)", [], "/cacerts?q=1", 302,
     f"location=https://{FQDN}/cacerts?q=1"),
    ("POST refused", ["-X", "POST", "-d", "x"], "/cacerts", 400, "body=" + USE_HTTPS),
    ("/ping passes", [], "/ping", 200, "body=pong"),
    ("/healthz passes", [], "/healthz", 200, "body=ok"),
    ("client X-Forwarded-Proto is overwritten by nginx", ["-H", "X-Forwarded-Proto: https"],
     "/cacerts", 302, f"location=https://{FQDN}/cacerts"),
    ("forged Host goes to server-url", ["-H", "Host: evil.test"], "/cacerts", 302,
     f"location={SHARED_SERVER_URL}/cacerts"),
]


@pytest.mark.parametrize(("args", "path", "status", "expect"),
                         [case[1:] for case in NGINX_PLAIN], ids=[c[0] for c in NGINX_PLAIN])
def test_nginx_plain_proxy(shared_corral_server: CorralServer,
                           rancher_example_nginx: StartNginx,
                           args: list[str], path: str, status: int, expect: str) -> None:
    """The example's location block behind plain HTTP: the server redirects by NGINX's
    X-Forwarded-Proto http."""
    nginx = rancher_example_nginx(shared_corral_server)
    got = curl(*nginx.resolve(nginx.plain_proxy_port), *args,
               f"http://{FQDN}:{nginx.plain_proxy_port}{path}")
    check(got.status, got.headers, got.body, status, expect, 0)


# -- through corral lb -------------------------------------------------------------------------


def test_lb_https_passes_through(shared_corral_server: CorralServer, corral_lb: StartLb) -> None:
    """Through corral lb's TLS server the request carries X-Forwarded-Proto https: no redirect,
    POST reaches the app, a client's own X-Forwarded-Proto is replaced."""
    lb = corral_lb(shared_corral_server)
    url = f"https://{FQDN}:{lb.tls_port}"
    base = [*lb.resolve(lb.tls_port), "--cacert", str(lb.ca)]
    got = curl(*base, f"{url}/cacerts")
    assert got.status == 200
    assert got.body == shared_corral_server.ca_path.read_text()
    assert curl(*base, "-X", "POST", "-d", "x", f"{url}/cacerts").status == 405
    assert curl(*base, "-H", "X-Forwarded-Proto: http", f"{url}/cacerts").status == 200
    assert curl(*base, f"{url}/ping").body == "pong"


def test_lb_port_80_redirects_itself(shared_corral_server: CorralServer,
                                     corral_lb: StartLb) -> None:
    """corral lb's redirect server answers 301 https://FQDN<uri> itself."""
    lb = corral_lb(shared_corral_server)
    got = curl(*lb.resolve(lb.redirect_port), f"http://{FQDN}:{lb.redirect_port}/v3?x=1")
    assert got.status == 301
    assert got.headers["location"] == f"https://{FQDN}/v3?x=1"


LB_PLAIN: list[tuple[str, list[str], str, int, str]] = [
    ("GET redirects (Host as received, port mapped)", [], "/cacerts?q=1", 302,
     "location=https://" + FQDN + ":{mapped}/cacerts?q=1"),
    ("POST refused", ["-X", "POST", "-d", "x"], "/cacerts", 400, "body=" + USE_HTTPS),
    ("/ping passes", [], "/ping", 200, "body=pong"),
    ("/healthz passes", [], "/healthz", 200, "body=ok"),
    ("client X-Forwarded-Proto is replaced by the lb", ["-H", "X-Forwarded-Proto: https"],
     "/cacerts", 302, "location=https://" + FQDN + ":{mapped}/cacerts"),
    ("forged Host goes to server-url", ["-H", "Host: evil.test"], "/cacerts", 302,
     f"location={SHARED_SERVER_URL}/cacerts"),
]


@pytest.mark.parametrize(("args", "path", "status", "expect"),
                         [case[1:] for case in LB_PLAIN], ids=[c[0] for c in LB_PLAIN])
def test_lb_plain_proxy(shared_corral_server: CorralServer, corral_lb: StartLb,
                        args: list[str], path: str, status: int, expect: str) -> None:
    """corral lb proxying plain HTTP: the server redirects by the lb's X-Forwarded-Proto http."""
    lb = corral_lb(shared_corral_server)
    got = curl(*lb.resolve(lb.plain_proxy_port), *args,
               f"http://{FQDN}:{lb.plain_proxy_port}{path}")
    check(got.status, got.headers, got.body, status, expect, https_port_for(lb.plain_proxy_port))
