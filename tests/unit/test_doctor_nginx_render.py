"""`corral lb nginx-config`'s renderer (pure): Rancher's example NGINX configuration filled in
from a corral lb configuration, plus keepalive, the `'' ''` map and HTTP/2."""

from __future__ import annotations

from typing import Any

import pytest

from corral.config.lb import LbConfig
from corral.config.nginx_render import (
    nginx_size,
    nginx_time,
    quote,
    render_nginx,
    render_nginx_text,
)

RANCHER_LOCATION = [
    "proxy_set_header Host $host;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Port $server_port;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_pass http://rancher;",
    "proxy_http_version 1.1;",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $connection_upgrade;",
    "proxy_read_timeout 900s;",
    "proxy_buffering off;",
]


def _config(**changes: Any) -> LbConfig:
    raw: dict[str, Any] = {
        "worker_processes": 4, "worker_rlimit_nofile": 40000, "worker_connections": 8192,
        "upstreams": {"rancher": {"servers": ["10.0.0.11:80", "10.0.0.12:80"],
                                  "health_check": {"path": "/healthz"}}},
        "servers": [
            {"listen": 443, "server_name": "rancher.example.com",
             "tls": {"certificates": [{"cert": "/certs/fullchain.pem",
                                       "key": "/certs/privkey.pem"}]},
             "proxy_pass": "rancher"},
            {"listen": 80, "server_name": "rancher.example.com",
             "redirect": "https://$server_name$request_uri"},
        ],
    }
    raw.update(changes)
    return LbConfig.model_validate(raw)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_rancher_example_directives_in_order() -> None:
    """The location block carries Rancher's directives in Rancher's order, after its comment
    on the shell window; the port-80 server returns 301 to https://$server_name$request_uri."""
    lines = _lines(render_nginx(_config()))
    positions = [lines.index(directive) for directive in RANCHER_LOCATION]
    assert positions == sorted(positions)
    assert lines[positions[-2] - 1].startswith("# This allows the ability for the execute shell")
    assert "listen 443 ssl http2;" in lines
    assert "return 301 https://$server_name$request_uri;" in lines
    assert "ssl_certificate /certs/fullchain.pem;" in lines
    for directive in ("worker_processes 4;", "worker_rlimit_nofile 40000;",
                      "worker_connections 8192;"):
        assert directive in lines


def test_keepalive_and_the_map_that_keeps_upstream_connections() -> None:
    """upstream keepalive, and `''` mapped to `''` (no Connection header upstream) instead of
    Rancher's `close`; `default Upgrade` keeps WebSockets upgrading."""
    lines = _lines(render_nginx(_config()))
    assert "keepalive 128;" in lines and "keepalive_timeout 60s;" in lines
    start = lines.index("map $http_upgrade $connection_upgrade {")
    assert lines[start + 1:start + 4] == ["default Upgrade;", "''      '';", "}"]
    assert "''      close;" not in lines


def test_health_checks_become_a_comment() -> None:
    """Active health checks are not in NGINX open source: a comment says so, no directive."""
    text = render_nginx(_config())
    assert "# corral lb's active health checks (GET /healthz every 5s" in text
    assert not [line for line in _lines(text) if "health_check" in line.split("#")[0]]


def test_no_http2_when_alpn_has_no_h2() -> None:
    """`tls.alpn: [http/1.1]` renders `listen 443 ssl;` without http2."""
    config = _config()
    raw = config.model_dump()
    raw["servers"][0]["tls"]["alpn"] = ["http/1.1"]
    lines = _lines(render_nginx(LbConfig.model_validate(raw)))
    assert "listen 443 ssl;" in lines
    assert not any(line.startswith("http2_max_concurrent_streams") for line in lines)


def test_keepalive_zero_and_least_conn() -> None:
    """`keepalive: 0` renders no keepalive; least_conn comes first, as NGINX requires."""
    upstreams = {"rancher": {"servers": ["a:80"], "keepalive": 0, "balance": "least_conn"}}
    lines = _lines(render_nginx(_config(upstreams=upstreams)))
    start = lines.index("upstream rancher {")
    assert lines[start + 1] == "least_conn;"
    assert not any(line.startswith("keepalive") for line in lines[start:start + 6])


def test_trusted_proxies_keep_their_forwarded_proto_and_port() -> None:
    """trusted_proxies: a geo of the CIDRs and maps used for X-Forwarded-Proto/-Port."""
    lines = _lines(render_nginx(_config(trusted_proxies=["10.0.0.0/24"])))
    assert "10.0.0.0/24 1;" in lines
    assert "proxy_set_header X-Forwarded-Proto $corral_forwarded_proto;" in lines
    assert "proxy_set_header X-Forwarded-Port $corral_forwarded_port;" in lines


def test_listen_addresses() -> None:
    """A bare port, an IPv4 and an IPv6 address:port."""
    servers = [
        {"listen": "127.0.0.1:8443", "server_name": "a", "proxy_pass": "rancher"},
        {"listen": "[::1]:8080", "server_name": "a", "redirect": "https://$server_name/"},
    ]
    lines = _lines(render_nginx(_config(servers=servers)))
    assert "listen 127.0.0.1:8443;" in lines and "listen [::1]:8080;" in lines


def test_title_lines_open_the_file_as_comments() -> None:
    """`title` lines come first, as comments."""
    text = render_nginx(_config(), title=["written by corral up", ""])
    assert text.startswith("# written by corral up\n#\nworker_processes 4;")


@pytest.mark.parametrize(("seconds", "text"), [(900, "900s"), (1.5, "1500ms"), (0.25, "250ms")])
def test_nginx_time(seconds: float, text: str) -> None:
    """Durations in NGINX's units."""
    assert nginx_time(seconds) == text


def test_nginx_size_and_quoting() -> None:
    """Sizes in k/m; values quoted when needed, a $ written as ${dollar} except in redirects."""
    assert (nginx_size(32 * 1024), nginx_size(1024 * 1024), nginx_size(1000)) == (
        "32k", "1m", "1000")
    assert quote("SAMEORIGIN") == "SAMEORIGIN"
    assert quote('a "b" $c') == '"a \\"b\\" ${dollar}c"'
    assert quote("https://$server_name$request_uri", variables=True) == (
        "https://$server_name$request_uri")


def test_render_from_the_text_corral_up_writes() -> None:
    """An lb.yml text as `corral up` writes it (placeholder certificate paths, listen on every
    interface) renders without opening any file, with the title given."""
    text = """\
worker_processes: auto
upstreams:
  rancher:
    servers:
      - 127.0.1.1:80
      - 127.0.1.2:80
    health_check: {path: /healthz, interval: 2s, timeout: 3s, rise: 2, fall: 3}
servers:
  - listen: "443"
    server_name: rancher.example.com
    tls:
      certificates:
        - cert: /certs/fullchain.pem
          key: /certs/privkey.pem
    proxy_pass: rancher
    read_timeout: 900s
  - listen: "80"
    server_name: rancher.example.com
    redirect: https://$server_name$request_uri
"""
    rendered = render_nginx_text(text, source="cluster.lb.yml", title=["for cluster c1"])
    lines = _lines(rendered)
    assert lines[0] == "# for cluster c1"
    assert "server 127.0.1.2:80;" in lines  # NGINX's defaults are corral lb's: not repeated
    assert "listen 443 ssl http2;" in lines and "listen 80;" in lines
    assert "worker_processes auto;" in lines


def test_values_that_differ_from_nginx_defaults_are_written() -> None:
    """max_fails, fail_timeout and the timeouts appear only when they differ from NGINX's."""
    upstreams = {"rancher": {"servers": ["a:80"], "max_fails": 3, "fail_timeout": "30s"}}
    lines = _lines(render_nginx(_config(upstreams=upstreams, keepalive_timeout="20s",
                                        client_header_timeout="10s")))
    assert "server a:80 max_fails=3 fail_timeout=30s;" in lines
    assert "keepalive_timeout 20s;" in lines and "client_header_timeout 10s;" in lines
    defaults = _lines(render_nginx(_config()))
    assert "server 10.0.0.11:80;" in defaults
    assert not any(line.startswith(("send_timeout", "client_header_timeout")) for line in defaults)
