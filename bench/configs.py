"""Configuration files of the benchmark's processes (pure text rendering, no I/O).

The proxies reproduce Rancher's example NGINX configuration (the "Example NGINX configuration" of
Rancher's single-node guide, Docker install behind an NGINX Layer-7 load balancer) with
`worker_processes 1`, `access_log off` and listeners on 127.0.0.1 only; HAProxy gets the
equivalent configuration in its own terms (`haproxy_cfg`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "rancher.bench.test"
"""The FQDN in the `server_name` of Rancher's example NGINX configuration (and the certificate)."""

WORKER_CONNECTIONS = 8192
WORKER_RLIMIT_NOFILE = 40000
UPSTREAM_KEEPALIVE = 128
BACKEND_BODY = "ok\n"

# The map of Rancher's example: ordinary requests get `Connection: close` upstream (a new
# connection each time).
RANCHER_EXAMPLE_CONNECTION_MAP = "''      close;"
# Tuned map: ordinary requests get no Connection header, so `upstream keepalive` can reuse.
TUNED_CONNECTION_MAP = "''      '';"


@dataclass(frozen=True)
class ProxyPorts:
    """The ports of one proxy: HTTPS (measured) and HTTP (the example's 80 → 301, not measured)."""

    https: int
    http: int


@dataclass(frozen=True)
class CertFiles:
    """Server certificate chain (leaf first) and key, the same files for every proxy."""

    chain: Path
    key: Path
    ca: Path

    @property
    def combined(self) -> Path:
        """Chain then key in one PEM file (HAProxy's `crt`), beside the others."""
        return self.chain.with_name("combined.pem")


def _nginx_common(directory: Path) -> str:
    """Process-level directives that keep an nginx instance inside `directory`."""
    return f"""\
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
"""


def _nginx_temp_paths(directory: Path) -> str:
    return "".join(
        f"    {kind}_temp_path {directory}/{kind}_temp;\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def backend_nginx_conf(directory: Path, port: int) -> str:
    """The backend: nginx answering every request with `200 ok` (the cheapest origin)."""
    return f"""\
# Benchmark backend: the cheapest origin there is.
worker_processes 1;
{_nginx_common(directory)}
events {{
    worker_connections {WORKER_CONNECTIONS};
}}

http {{
    access_log off;
{_nginx_temp_paths(directory)}
    # The backend is shared infrastructure, not a subject: never close kept-alive connections.
    keepalive_requests 1000000;
    keepalive_timeout 300s;

    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{
            return 200 "{BACKEND_BODY.strip()}\\n";
        }}
    }}
}}
"""


def proxy_nginx_conf(
    directory: Path,
    ports: ProxyPorts,
    backend_port: int,
    certs: CertFiles,
    *,
    tuned: bool,
    workers: int = 1,
    worker_connections: int = WORKER_CONNECTIONS,
) -> str:
    """Rancher's example NGINX configuration with `workers` workers; `tuned` adds keep-alive."""
    keepalive = f"\n        keepalive {UPSTREAM_KEEPALIVE};" if tuned else ""
    connection_map = TUNED_CONNECTION_MAP if tuned else RANCHER_EXAMPLE_CONNECTION_MAP
    flavour = 'tuned: + upstream keepalive, Connection ""' if tuned else "exactly as written"
    return f"""\
# Rancher's example NGINX configuration ({flavour}), worker_processes 4 -> {workers}, 127.0.0.1.
worker_processes {workers};
worker_rlimit_nofile {WORKER_RLIMIT_NOFILE};
{_nginx_common(directory)}
events {{
    worker_connections {worker_connections};
}}

http {{
    access_log off;
{_nginx_temp_paths(directory)}
    upstream rancher {{
        server 127.0.0.1:{backend_port};{keepalive}
    }}

    map $http_upgrade $connection_upgrade {{
        default Upgrade;
        {connection_map}
    }}

    server {{
        listen 127.0.0.1:{ports.https} ssl http2;
        server_name {SERVER_NAME};
        ssl_certificate {certs.chain};
        ssl_certificate_key {certs.key};
        ssl_protocols TLSv1.2 TLSv1.3;

        location / {{
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://rancher;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 900s;
            proxy_buffering off;
        }}
    }}

    server {{
        listen 127.0.0.1:{ports.http};
        server_name {SERVER_NAME};
        return 301 https://$server_name$request_uri;
    }}
}}
"""


def corral_lb_yaml(
    ports: ProxyPorts,
    backend_port: int,
    certs: CertFiles,
    workers: int = 1,
    groups: Sequence[str] | None = None,
    worker_connections: int = WORKER_CONNECTIONS,
) -> str:
    """The `corral lb` equivalent of Rancher's example NGINX configuration (no access log);
    `groups` replaces the default key-exchange groups."""
    groups_line = f"\n      groups: [{', '.join(groups)}]" if groups else ""
    return f"""\
# Rancher's example NGINX configuration for corral lb (see examples/lb.yml), {workers} worker(s).
worker_processes: {workers}
worker_rlimit_nofile: {WORKER_RLIMIT_NOFILE}
worker_connections: {worker_connections}
access_log: "off"

upstreams:
  rancher:
    servers: ["127.0.0.1:{backend_port}"]
    keepalive: {UPSTREAM_KEEPALIVE}

servers:
  - listen: "127.0.0.1:{ports.https}"
    server_name: {SERVER_NAME}
    tls:
      certificates:
        - cert: {certs.chain}
          key: {certs.key}
      protocols: [TLSv1.2, TLSv1.3]{groups_line}
    proxy_pass: rancher
    read_timeout: 900s

  - listen: "127.0.0.1:{ports.http}"
    server_name: {SERVER_NAME}
    redirect: https://$server_name$request_uri
"""


def haproxy_cfg(
    directory: Path,
    ports: ProxyPorts,
    backend_port: int,
    certs: CertFiles,
    *,
    threads: int = 1,
    maxconn: int = WORKER_CONNECTIONS,
) -> str:
    """HAProxy with the equivalent of Rancher's example NGINX configuration: `threads` threads,
    TLS 1.2 and 1.3, ALPN h2 and http/1.1, kept-alive upstream connections shared between
    clients (`http-reuse always`, as nginx's upstream `keepalive`), nginx's timeouts, the same
    X-Forwarded-* headers, no log, and the port-80 redirect. `certs.combined` is the PEM HAProxy
    wants: chain and key in one file."""
    return f"""\
# HAProxy with the equivalent of Rancher's example NGINX configuration, {threads} thread(s).
global
    nbthread {threads}
    maxconn {maxconn}
    pidfile {directory}/haproxy.pid
    ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout http-request 60s
    timeout client 60s
    timeout http-keep-alive 75s
    timeout server 900s
    timeout tunnel 900s

frontend https
    bind 127.0.0.1:{ports.https} ssl crt {certs.combined} alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Port %[dst_port]
    option forwardfor
    default_backend rancher

frontend http
    bind 127.0.0.1:{ports.http}
    http-request redirect location https://{SERVER_NAME}%[capture.req.uri] code 301

backend rancher
    server backend 127.0.0.1:{backend_port}
"""
