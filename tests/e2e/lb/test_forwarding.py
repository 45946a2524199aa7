"""Port 80 redirects to HTTPS; Host and X-Forwarded-* reach the upstream; upstream keep-alive."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.lb.clients import (
    announced_close,
    curl,
    echo_headers,
    echo_json,
    get_request,
    header_values,
    https_client,
    plain_connect,
    read_response,
    read_until_closed,
    tls_connect,
)
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import SERVER_NAME, Backend, Certs, LbProcess, lb_config


@pytest.fixture(scope="module")
def one_backend(module_backends: StartBackends) -> Backend:
    return module_backends(1)[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, one_backend: Backend, module_start_lb: StartLb) -> LbProcess:
    """HTTPS proxy to one backend, a port-80-style redirect listener and a plain proxy listener."""
    return module_start_lb(lb_config(certs, [one_backend], redirect=True, plain_proxy=True))


# -- port 80 → 301 ---------------------------------------------------------------------------


def test_http_redirects_301_to_https_server_name(lb: LbProcess) -> None:
    """GET on the redirect listener → 301 https://<server_name><uri>, query kept."""
    with plain_connect(lb.ports[1]) as sock:
        sock.sendall(get_request("/v3/settings?x=1&y=2", host=SERVER_NAME))
        response = read_response(sock)
    assert response.status == 301
    assert response.header("location") == f"https://{SERVER_NAME}/v3/settings?x=1&y=2"


def test_redirect_ignores_forged_host(lb: LbProcess) -> None:
    """A forged Host never becomes the redirect target: the configured server_name is used."""
    with plain_connect(lb.ports[1]) as sock:
        sock.sendall(get_request("/login", host="evil.example:8080"))
        response = read_response(sock)
    assert response.status == 301
    assert response.header("location") == f"https://{SERVER_NAME}/login"


def test_redirect_with_curl_post(lb: LbProcess) -> None:
    """curl POST to the redirect listener also gets the 301 and the https Location."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-d", "a=1"]
    argv += ["-H", "Host: attacker.example", f"http://127.0.0.1:{lb.ports[1]}/a/b?c=d"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"301 https://{SERVER_NAME}/a/b?c=d"


# -- forwarded headers ----------------------------------------------------------------------


def test_forwarded_headers_as_in_rancher_example_nginx(certs: Certs, lb: LbProcess) -> None:
    """Host as received, X-Forwarded-Proto https, -Port the listener port, -For the client."""
    result = curl(certs, lb.port, "/echo")
    assert result.returncode == 0, result.stderr.decode()
    headers = [(n.lower(), v) for n, v in json.loads(result.stdout)["headers"]]
    assert header_values(headers, "host") == [f"{SERVER_NAME}:{lb.port}"]
    assert header_values(headers, "x-forwarded-proto") == ["https"]
    assert header_values(headers, "x-forwarded-port") == [str(lb.port)]
    assert header_values(headers, "x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_for_is_appended(certs: Certs, lb: LbProcess) -> None:
    """An incoming X-Forwarded-For keeps its value and gets the client address appended."""
    with https_client(certs, lb.port) as client:
        response = client.get("/echo", headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.2"})
    headers = echo_headers(response)
    assert header_values(headers, "x-forwarded-for") == ["203.0.113.7, 198.51.100.2, 127.0.0.1"]


def test_client_forwarded_proto_and_port_replaced(certs: Certs, lb: LbProcess) -> None:
    """A client's own X-Forwarded-Proto/-Port are replaced, not passed or duplicated."""
    with https_client(certs, lb.port) as client:
        response = client.get(
            "/echo", headers={"X-Forwarded-Proto": "http", "X-Forwarded-Port": "1"}
        )
    headers = echo_headers(response)
    assert header_values(headers, "x-forwarded-proto") == ["https"]
    assert header_values(headers, "x-forwarded-port") == [str(lb.port)]


def test_hop_by_hop_headers_removed(certs: Certs, lb: LbProcess) -> None:
    """Connection, the headers it names, Keep-Alive, Proxy-Connection, TE, Trailer are dropped."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(
            get_request(
                "/echo",
                extra=[
                    "Connection: keep-alive, X-Hop-Secret",
                    "X-Hop-Secret: must-not-pass",
                    "Keep-Alive: timeout=5",
                    "Proxy-Connection: keep-alive",
                    "TE: trailers",
                    "Trailer: X-Checksum",
                    "X-End-To-End: passes",
                ],
            )
        )
        response = read_response(sock)
    assert response.status == 200, response.body
    headers = [(n.lower(), v) for n, v in json.loads(response.body)["headers"]]
    names = {n for n, _ in headers}
    for dropped in ("x-hop-secret", "keep-alive", "proxy-connection", "te", "trailer"):
        assert dropped not in names, f"{dropped} reached the upstream: {headers}"
    for value in header_values(headers, "connection"):
        assert "x-hop-secret" not in value.lower()
    assert header_values(headers, "x-end-to-end") == ["passes"]


def test_end_to_end_headers_and_query_pass_unchanged(certs: Certs, lb: LbProcess) -> None:
    """Ordinary headers (repeated ones too), method, path and query reach the backend as sent."""
    with https_client(certs, lb.port) as client:
        response = client.request(
            "DELETE",
            "/echo?a=1&b=%2F",
            headers=[("X-Multi", "one"), ("X-Multi", "two"), ("Authorization", "Bearer t")],
        )
    data = response.json()
    headers = echo_headers(response)
    assert (data["method"], data["path"], data["query"]) == ("DELETE", "/echo", "a=1&b=%2F")
    assert header_values(headers, "x-multi") in (["one", "two"], ["one, two"])
    assert header_values(headers, "authorization") == ["Bearer t"]
    assert data["http_version"] == "1.1"


def test_http_1_0_without_host_gets_server_name(certs: Certs, lb: LbProcess) -> None:
    """An HTTP/1.0 request without Host is forwarded with Host = server_name."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
        response = read_response(sock)
    assert response.status == 200, response.body
    headers = [(n.lower(), v) for n, v in json.loads(response.body)["headers"]]
    assert header_values(headers, "host") == [SERVER_NAME]


def test_plain_listener_forwards_proto_http(lb: LbProcess) -> None:
    """A listener without TLS forwards X-Forwarded-Proto http and its own port."""
    port = lb.ports[2]
    with plain_connect(port) as sock:
        sock.sendall(get_request("/echo", host=f"{SERVER_NAME}:{port}"))
        response = read_response(sock)
    assert response.status == 200, response.body
    headers = [(n.lower(), v) for n, v in json.loads(response.body)["headers"]]
    assert header_values(headers, "x-forwarded-proto") == ["http"]
    assert header_values(headers, "x-forwarded-port") == [str(port)]
    assert header_values(headers, "host") == [f"{SERVER_NAME}:{port}"]


def test_upstream_keep_alive_headers_not_forwarded(certs: Certs, lb: LbProcess) -> None:
    """The upstream's Connection/Keep-Alive response headers do not reach the client."""
    query = "?header=Keep-Alive:timeout%3D5,%20max%3D100&header=Connection:keep-alive"
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/status/200" + query))
        first = read_response(sock)
        sock.sendall(get_request("/status/204"))
        second = read_response(sock)
    assert (first.status, second.status) == (200, 204)
    assert first.header("keep-alive") is None
    assert (first.header("connection") or "keep-alive").lower() == "keep-alive"


def test_upstream_connection_close_does_not_close_client(
    certs: Certs, one_backend: Backend, lb: LbProcess
) -> None:
    """An upstream answering Connection: close does not end the client's keep-alive connection."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/status/200?header=Connection:close"))
        first = read_response(sock)
        sock.sendall(get_request("/echo"))
        second = read_response(sock)
    assert first.status == 200
    assert (first.header("connection") or "keep-alive").lower() == "keep-alive"
    assert second.status == 200


# -- upstream keep-alive ----------------------------------------------------------------------


def test_upstream_connection_reused(certs: Certs, one_backend: Backend, lb: LbProcess) -> None:
    """Ten sequential requests on one client connection use one upstream connection."""
    before = one_backend.stats()["connections_accepted"]
    with https_client(certs, lb.port) as client:
        connections = {echo_json(client)["connection"] for _ in range(10)}
    assert len(connections) == 1
    # this stats call, plus at most one new connection from the lb (none if one was pooled)
    assert one_backend.stats()["connections_accepted"] - before in (1, 2)


def test_upstream_connection_reused_across_clients(
    certs: Certs, one_backend: Backend, lb: LbProcess
) -> None:
    """Sequential requests from separate client connections share the pooled connection."""
    ids = set()
    for _ in range(5):
        with https_client(certs, lb.port) as client:
            ids.add(echo_json(client)["connection"])
    assert len(ids) == 1


def test_keepalive_zero_opens_a_connection_per_request(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """With upstream keepalive: 0 every request gets its own upstream connection."""
    backend = backends(1)[0]
    lb = start_lb(lb_config(certs, [backend], upstream={"keepalive": 0}))
    with https_client(certs, lb.port) as client:
        connections = [echo_json(client)["connection"] for _ in range(5)]
    assert len(set(connections)) == 5


def test_x_forwarded_for_from_several_header_lines(certs: Certs, lb: LbProcess) -> None:
    """Several incoming X-Forwarded-For lines are combined, in order, before the client address."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(
            get_request("/echo", extra=["X-Forwarded-For: 192.0.2.1", "X-Forwarded-For: 192.0.2.2"])
        )
        response = read_response(sock)
    headers = [(n.lower(), v) for n, v in json.loads(response.body)["headers"]]
    assert header_values(headers, "x-forwarded-for") == ["192.0.2.1, 192.0.2.2, 127.0.0.1"]


def test_non_ascii_header_value_passes_unchanged(certs: Certs, lb: LbProcess) -> None:
    """A header value with obs-text bytes (UTF-8) reaches the backend byte for byte."""
    value = "café ☕".encode()
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: lb.test\r\nX-Text: " + value + b"\r\n\r\n")
        response = read_response(sock)
    headers = [(n.lower(), v) for n, v in json.loads(response.body)["headers"]]
    assert header_values(headers, "x-text") == [value.decode("latin-1")]


def test_declined_upgrade_stays_http(certs: Certs, lb: LbProcess) -> None:
    """An Upgrade the upstream declines (plain 200) stays HTTP: reusable, or closed as announced."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(
            get_request("/status/200", extra=["Upgrade: websocket", "Connection: Upgrade"])
        )
        first = read_response(sock)
        assert first.status == 200
        if announced_close(first):
            assert read_until_closed(sock)[1]
        else:
            sock.sendall(get_request("/status/202"))
            assert read_response(sock).status == 202


def test_h2c_upgrade_is_refused_and_served_as_http_1_1(certs: Certs, lb: LbProcess) -> None:
    """h2c smuggling: `Upgrade: h2c` never reaches the upstream (which would switch and let the
    client talk to it past the proxy); the request is answered over HTTP/1.1 and the
    connection serves the next request."""
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(
            get_request(
                "/echo",
                extra=[
                    "Upgrade: h2c",
                    "Connection: Upgrade, HTTP2-Settings",
                    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                ],
            )
        )
        first = read_response(sock)
        assert first.status == 200
        seen = {name.lower() for name, _ in json.loads(first.body)["headers"]}
        assert not seen & {"upgrade", "http2-settings", "connection"}
        sock.sendall(get_request("/status/202"))
        assert read_response(sock).status == 202


def test_host_header_selects_server_on_shared_port(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Two servers on one port: Host picks the server (and its upstream); unknown → the first."""
    first, second = backends(2)
    config = lb_config(certs, [first])
    other_server = {**config["servers"][0], "server_name": ["other.test", "alias.test"]}
    other_server["proxy_pass"] = "other"
    config["servers"].append(other_server)
    config["upstreams"]["other"] = {"servers": [second.address]}
    lb = start_lb(config)
    with https_client(certs, lb.port) as client:
        by_host = {
            host: echo_json(client, headers={"Host": host})["backend"]
            for host in ("lb.test", "other.test", "alias.test", "unknown.test")
        }
    assert by_host == {
        "lb.test": "b1",
        "other.test": "b2",
        "alias.test": "b2",
        "unknown.test": "b1",
    }
