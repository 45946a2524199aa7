"""The per-server response-header changes (`corral.proxy.response_headers`): what is hidden,
what is added, and that a server without any has none at all."""

from __future__ import annotations

from typing import Any

from corral.config.lb import Server
from corral.proxy.response_headers import response_headers

UPSTREAM = [
    (b"Content-Type", b"text/plain"),
    (b"Server", b"backend/1.0"),
    (b"strict-transport-security", b"max-age=5"),
    (b"X-Powered-By", b"php"),
    (b"Content-Length", b"3"),
]


def server(tls: dict[str, Any] | None = None, **keys: Any) -> Server:
    """A server block proxying to `app`, TLS when `tls` is given."""
    data: dict[str, Any] = {"listen": 8443, "server_name": "lb.test", "proxy_pass": "app", **keys}
    if tls is not None:
        data["tls"] = {"certificates": [{"cert": "c.pem", "key": "k.pem"}], **tls}
    return Server.model_validate(data)


def test_nothing_configured_means_no_policy() -> None:
    """No add, hide or HSTS: None, so responses take the unchanged path."""
    assert response_headers(server()) is None
    assert response_headers(server(tls={})) is None


def test_hide_drops_names_case_insensitively_and_keeps_order() -> None:
    """Hidden names go whatever their case; the rest stay in order, framing included."""
    policy = response_headers(server(hide_response_headers=["server", "X-POWERED-BY"]))
    assert policy is not None
    assert policy.apply(UPSTREAM) == [
        (b"Content-Type", b"text/plain"),
        (b"strict-transport-security", b"max-age=5"),
        (b"Content-Length", b"3"),
    ]


def test_add_appends_after_the_upstream_headers() -> None:
    """Added headers come last, after an upstream header of the same name (NGINX's add_header)."""
    policy = response_headers(server(add_response_headers={"Server": "corral", "X-A": "1"}))
    assert policy is not None
    applied = policy.apply(UPSTREAM)
    assert applied[: len(UPSTREAM)] == UPSTREAM
    assert applied[len(UPSTREAM) :] == [(b"Server", b"corral"), (b"X-A", b"1")]


def test_hide_and_add_the_same_name_replaces_it() -> None:
    """Hiding and adding one name replaces the upstream's value with the configured one."""
    policy = response_headers(
        server(hide_response_headers=["Server"], add_response_headers={"Server": "corral"})
    )
    assert policy is not None
    servers = [v for n, v in policy.apply(UPSTREAM) if n.lower() == b"server"]
    assert servers == [b"corral"]


def test_hsts_replaces_the_upstreams_and_comes_first() -> None:
    """tls.hsts drops the upstream's Strict-Transport-Security and adds its own, first."""
    policy = response_headers(
        server(tls={"hsts": {"max_age": "1d"}}, add_response_headers={"X-A": "1"})
    )
    assert policy is not None
    applied = policy.apply(UPSTREAM)
    sts = [v for n, v in applied if n.lower() == b"strict-transport-security"]
    assert sts == [b"max-age=86400"]
    assert applied[-2:] == [(b"Strict-Transport-Security", b"max-age=86400"), (b"X-A", b"1")]


def test_apply_returns_a_new_list() -> None:
    """The caller's list is left as it is (HTTP/2 appends the trailers to it later)."""
    headers = list(UPSTREAM)
    policy = response_headers(server(hide_response_headers=["Server"]))
    assert policy is not None
    assert policy.apply(headers) is not headers
    assert headers == UPSTREAM


def test_local_responses_get_the_added_headers_only() -> None:
    """The proxy's own responses keep their headers and get the added ones (and HSTS)."""
    policy = response_headers(
        server(
            tls={"hsts": {}},
            hide_response_headers=["Content-Type"],
            add_response_headers={"X-A": "1"},
        )
    )
    assert policy is not None
    assert policy.local([(b"Content-Type", b"text/html"), (b"Location", b"https://x/")]) == [
        (b"Content-Type", b"text/html"),
        (b"Location", b"https://x/"),
        (b"Strict-Transport-Security", b"max-age=31536000"),
        (b"X-A", b"1"),
    ]
