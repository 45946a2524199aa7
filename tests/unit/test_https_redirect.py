"""The HTTP listener's redirect table (corral.server.https.decide), case by case."""

from __future__ import annotations

import pytest

from corral.server.https import (
    PASS,
    UNKNOWN_HOST,
    USE_HTTPS,
    Decision,
    HostPort,
    Redirect,
    Reject,
    decide,
    https_port_for,
    parse_host,
    server_url_origin,
)

SERVED = {"corral.test", "localhost", "127.0.0.1", "::1", "10.0.0.5"}
UNKNOWN = Reject(400, UNKNOWN_HOST)


def run(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    host: str | None = "corral.test",
    tls: bool = False,
    proto: str | None = None,
    server_url: str = "",
    raw_path: str | None = None,
) -> Decision:
    return decide(
        method=method,
        path=path,
        query=query,
        host=host,
        tls=tls,
        forwarded_proto=proto,
        is_served=SERVED.__contains__,
        server_url=server_url,
        raw_path=raw_path,
    )


# (case id, keyword arguments for run(), expected decision)
TABLE: list[tuple[str, dict[str, object], Decision]] = [
    ("tls passes", {"tls": True}, PASS),
    ("tls POST passes", {"tls": True, "method": "POST"}, PASS),
    ("xfp https passes", {"proto": "https"}, PASS),
    ("xfp wss passes", {"proto": "wss"}, PASS),
    ("xfp HTTPS any case passes", {"proto": "HTTPS"}, PASS),
    ("xfp list first https passes", {"proto": "https, http"}, PASS),
    ("xfp list first http redirects", {"proto": "http, https"}, Redirect("https://corral.test/")),
    ("xfp http redirects", {"proto": "http"}, Redirect("https://corral.test/")),
    ("xfp ws redirects", {"proto": "ws"}, Redirect("https://corral.test/")),
    ("xfp https POST passes", {"proto": "https", "method": "POST"}, PASS),
    ("ping passes", {"path": "/ping"}, PASS),
    ("ping prefix passes", {"path": "/pingpong"}, PASS),
    ("healthz passes", {"path": "/healthz"}, PASS),
    ("health prefix passes", {"path": "/health/x"}, PASS),
    ("well-known passes", {"path": "/.well-known/acme-challenge/t"}, PASS),
    ("well-known without slash redirects", {"path": "/.well-known"},
     Redirect("https://corral.test/.well-known")),
    ("POST ping passes", {"path": "/ping", "method": "POST"}, PASS),
    ("GET redirects", {}, Redirect("https://corral.test/")),
    ("HEAD redirects", {"method": "HEAD"}, Redirect("https://corral.test/")),
    ("path and query kept", {"path": "/v3/settings", "query": "a=1&b=%20"},
     Redirect("https://corral.test/v3/settings?a=1&b=%20")),
    ("raw path kept", {"path": "/a b", "raw_path": "/a%20b"}, Redirect("https://corral.test/a%20b")),
    ("POST refused", {"method": "POST"}, Reject(400, USE_HTTPS)),
    ("PUT refused", {"method": "PUT"}, Reject(400, USE_HTTPS)),
    ("DELETE refused", {"method": "DELETE"}, Reject(400, USE_HTTPS)),
    ("OPTIONS refused", {"method": "OPTIONS"}, Reject(400, USE_HTTPS)),
    ("POST to unknown host refused", {"method": "POST", "host": "evil.test"},
     Reject(400, USE_HTTPS)),
    ("port 80 maps to 443", {"host": "corral.test:80"}, Redirect("https://corral.test:443/")),
    ("port 8080 maps to 8443", {"host": "corral.test:8080"}, Redirect("https://corral.test:8443/")),
    ("port 9080 maps to 9443", {"host": "corral.test:9080"}, Redirect("https://corral.test:9443/")),
    ("port 443 stays 443", {"host": "corral.test:443"}, Redirect("https://corral.test:443/")),
    ("port 999 maps to 443", {"host": "corral.test:999"}, Redirect("https://corral.test:443/")),
    ("port 32080 maps to 32443", {"host": "localhost:32080"},
     Redirect("https://localhost:32443/")),
    ("empty port is no port", {"host": "corral.test:"}, Redirect("https://corral.test/")),
    ("host name case folded", {"host": "CORRAL.Test"}, Redirect("https://corral.test/")),
    ("trailing dot dropped", {"host": "corral.test."}, Redirect("https://corral.test/")),
    ("ipv4 host", {"host": "127.0.0.1:8080"}, Redirect("https://127.0.0.1:8443/")),
    ("ipv6 host", {"host": "[::1]:80"}, Redirect("https://[::1]:443/")),
    ("ipv6 host without port", {"host": "[::1]"}, Redirect("https://[::1]/")),
    ("unknown host without server-url refused", {"host": "evil.test"}, UNKNOWN),
    ("unknown host goes to server-url",
     {"host": "evil.test:8080", "server_url": "https://corral.test:9443", "path": "/x"},
     Redirect("https://corral.test:9443/x")),
    ("unknown host goes to server-url without port",
     {"host": "evil.test", "server_url": "https://rancher.example.com/", "query": "q=1"},
     Redirect("https://rancher.example.com/?q=1")),
    ("missing host without server-url refused", {"host": None}, UNKNOWN),
    ("missing host goes to server-url", {"host": None, "server_url": "https://corral.test"},
     Redirect("https://corral.test/")),
    ("host with path refused", {"host": "evil.test/x"}, UNKNOWN),
    ("host with userinfo refused", {"host": "corral.test@evil.test"}, UNKNOWN),
    ("host with bad port refused", {"host": "corral.test:http"}, UNKNOWN),
    ("host with huge port refused", {"host": "corral.test:70000"}, UNKNOWN),
    ("unbracketed ipv6 refused", {"host": "::1"}, UNKNOWN),
    ("served ipv4 not an open redirect", {"host": "10.0.0.5"}, Redirect("https://10.0.0.5/")),
    ("double slash path stays on host", {"path": "//evil.test/x"},
     Redirect("https://corral.test//evil.test/x")),
]


@pytest.mark.parametrize(("kwargs", "expected"), [(k, e) for _, k, e in TABLE],
                         ids=[case for case, _, _ in TABLE])
def test_redirect_table(kwargs: dict[str, object], expected: Decision) -> None:
    """Each row of the redirect table gives exactly its expected decision."""
    assert run(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("http", "https"), [(80, 443), (8080, 8443), (1080, 1443), (0, 443),
                                             (65080, 65443), (443, 443)])
def test_https_port_for(http: int, https: int) -> None:
    """Ports map (port // 1000) * 1000 + 443."""
    assert https_port_for(http) == https


@pytest.mark.parametrize(("value", "parsed"), [
    ("a.example", HostPort("a.example", None)),
    ("A.Example:81", HostPort("a.example", 81)),
    ("[fe80::1%eth0]:80", HostPort("fe80::1", 80)),
    ("[::ffff:1.2.3.4]", HostPort("::ffff:102:304", None)),
    ("", None),
    ("a..b", None),
    ("[::1", None),
    ("[::1]x", None),
    ("a b", None),
])
def test_parse_host(value: str, parsed: HostPort | None) -> None:
    """Host headers parse to name and port, malformed ones to None."""
    assert parse_host(value) == parsed


@pytest.mark.parametrize(("url", "origin"), [
    ("https://corral.test", "https://corral.test"),
    ("https://Corral.Test:8443/some/path", "https://corral.test:8443"),
    ("http://corral.test", "https://corral.test"),
    ("", ""),
    ("not a url", ""),
])
def test_server_url_origin(url: str, origin: str) -> None:
    """The server-url's origin is what unknown hosts are redirected to."""
    assert server_url_origin(url) == origin
