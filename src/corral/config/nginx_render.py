"""The NGINX configuration equivalent to a `corral lb` configuration (`corral lb nginx-config`).

It is Rancher's example NGINX configuration filled in with the file's upstreams, names,
certificates, listeners and timeouts, plus what NGINX needs to behave as corral lb does:

* `keepalive` in each upstream and the `map` with `'' ''`, so an ordinary request sends no
  `Connection` header upstream and keeps its upstream connection (Rancher's `'' close` closes
  every one), while `Connection $connection_upgrade` still passes WebSocket upgrades;
* `http2` on the TLS listeners whose `alpn` offers h2; `ssl_protocols`, `ssl_ecdh_curve`;
* `proxy_request_buffering off` besides Rancher's `proxy_buffering off` (corral lb buffers
  neither direction);
* `trusted_proxies` as a `geo` and two `map`s keeping the X-Forwarded-Proto/-Port such a proxy
  sent.

What NGINX open source cannot do (active health checks, a Prometheus endpoint, certificates
chosen by name within one server block) becomes a comment saying so. `render_nginx` is pure
(text from the model); `load_for_nginx` reads the file as the rendering needs it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from corral.config.errors import ConfigError
from corral.config.lb import LbConfig, Server, Upstream
from corral.config.loader import load_model, parse_model

INDENT = "    "
SHELL_COMMENT = (  # Rancher's comment on proxy_read_timeout, as written there
    "# This allows the ability for the execute shell window to remain open for up to 15 "
    "minutes. Without this parameter, the default is 1 minute and will automatically close."
)
TRUSTED_VARIABLE = "$corral_trusted_proxy"
PROTO_VARIABLE = "$corral_forwarded_proto"
PORT_VARIABLE = "$corral_forwarded_port"
_BARE = re.compile(r"[A-Za-z0-9_./:*@=+,\[\]-]+")
# NGINX's own defaults: a directive that would only repeat one is left out
NGINX_MAX_FAILS = 1
NGINX_FAIL_TIMEOUT_S = 10.0
NGINX_SEND_TIMEOUT_S = 60.0
NGINX_CLIENT_HEADER_TIMEOUT_S = 60.0
NGINX_KEEPALIVE_TIMEOUT_S = 75.0


def nginx_time(seconds: float) -> str:
    """`900s`, `500ms`, `1800s`: an NGINX time (whole seconds when exact)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def nginx_size(size: int) -> str:
    """`32k`, `1m` or bytes: an NGINX size."""
    for unit, factor in (("m", 1024 * 1024), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def quote(value: str, *, variables: bool = False) -> str:
    """A directive argument: bare when safe, else double-quoted. A `$` is written `${dollar}`
    (NGINX reads `$` as a variable; the `geo $dollar` block defines it) unless `variables`
    says the value means NGINX's variables (a redirect's $server_name and $request_uri)."""
    if _BARE.fullmatch(value.replace("$", "") if variables else value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if not variables:
        escaped = escaped.replace("$", "${dollar}")
    return f'"{escaped}"'


def _needs_dollar(config: LbConfig) -> bool:
    values = [v for s in config.servers for v in s.add_response_headers.values()]
    values += [c.cert + c.key for s in config.servers if s.tls for c in s.tls.certificates]
    return any("$" in value for value in values)


def _listen(server: Server, http2: bool) -> str:
    """`listen 443 ssl http2;` for the server's address."""
    address, port = server.address
    if address == "0.0.0.0":
        where = str(port)
    else:
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    params = " ssl" if server.tls is not None else ""
    params += " http2" if http2 else ""
    return f"listen {where}{params};"


def _h2_ports(config: LbConfig) -> set[tuple[str, int]]:
    """Listeners where some TLS server offers h2 (NGINX's http2 is per listening socket)."""
    return {s.address for s in config.servers if s.tls is not None and "h2" in s.tls.alpn}


def _upstream(name: str, upstream: Upstream) -> list[str]:
    lines = [f"upstream {name} {{"]
    if upstream.balance == "least_conn":
        lines.append(f"{INDENT}least_conn;")
    params = ""
    if upstream.max_fails != NGINX_MAX_FAILS:
        params += f" max_fails={upstream.max_fails}"
    if upstream.fail_timeout != NGINX_FAIL_TIMEOUT_S:
        params += f" fail_timeout={nginx_time(upstream.fail_timeout)}"
    lines += [f"{INDENT}server {endpoint}{params};" for endpoint in upstream.servers]
    if upstream.keepalive:
        lines.append(f"{INDENT}keepalive {upstream.keepalive};")
        lines.append(f"{INDENT}keepalive_timeout {nginx_time(upstream.keepalive_timeout)};")
    check = upstream.health_check
    if check is not None:
        lines += [
            f"{INDENT}# corral lb's active health checks (GET {check.path} every "
            f"{nginx_time(check.interval)}, timeout {nginx_time(check.timeout)}, rise "
            f"{check.rise}, fall {check.fall})",
            f"{INDENT}# are not in NGINX open source (NGINX Plus: health_check): here a "
            "server is skipped for",
            f"{INDENT}# fail_timeout after max_fails failed requests, and tried again after "
            "that.",
        ]
    return [*lines, "}"]


def _trusted(config: LbConfig) -> list[str]:
    if not config.trusted_proxies:
        return []
    lines = ["# trusted_proxies: a connection from these keeps the X-Forwarded-Proto and -Port "
             "it sent", f"geo {TRUSTED_VARIABLE} {{", f"{INDENT}default 0;"]
    lines += [f"{INDENT}{cidr} 1;" for cidr in config.trusted_proxies]
    lines.append("}")
    for variable, header, fallback in ((PROTO_VARIABLE, "proto", "$scheme"),
                                       (PORT_VARIABLE, "port", "$server_port")):
        lines += [
            f'map "{TRUSTED_VARIABLE}$http_x_forwarded_{header}" {variable} {{',
            f"{INDENT}default {fallback};",
            f'{INDENT}"~^1\\s*(?<first_{header}>[^,\\s]+)" $first_{header};',
            "}",
        ]
    return lines


def _tls_lines(server: Server) -> list[str]:
    tls = server.tls
    if tls is None:
        return []
    lines = []
    for certificate in tls.certificates:
        lines += [f"ssl_certificate {quote(certificate.cert)};",
                  f"ssl_certificate_key {quote(certificate.key)};"]
    if len(tls.certificates) > 1:
        lines.append("# corral lb serves the certificate whose names match the SNI; NGINX picks "
                     "among these by key type only: give each name its own server block when "
                     "their certificates differ")
    lines.append(f"ssl_protocols {' '.join(tls.protocols)};")
    lines.append(f"ssl_ecdh_curve {':'.join(tls.groups)};")
    if "http/1.1" not in tls.alpn:
        lines.append("# alpn without http/1.1: NGINX always offers HTTP/1.1 as well")
    return lines


def _header_lines(server: Server) -> list[str]:
    lines = []
    if server.tls is not None and server.tls.hsts is not None:
        lines += ["proxy_hide_header Strict-Transport-Security;",
                  f"add_header Strict-Transport-Security {quote(server.tls.hsts.header_value)} "
                  "always;"]
    lines += [f"proxy_hide_header {name};" for name in server.hide_response_headers]
    lines += [f"add_header {name} {quote(value)} always;"
              for name, value in server.add_response_headers.items()]
    return lines


def _location(server: Server, upstream: Upstream, trusted: bool) -> list[str]:
    proto = PROTO_VARIABLE if trusted else "$scheme"
    port = PORT_VARIABLE if trusted else "$server_port"
    body = [
        "proxy_set_header Host $host;",
        f"proxy_set_header X-Forwarded-Proto {proto};",
        f"proxy_set_header X-Forwarded-Port {port};",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"proxy_pass http://{server.proxy_pass};",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        SHELL_COMMENT,
        f"proxy_read_timeout {nginx_time(server.read_timeout)};",
        f"proxy_connect_timeout {nginx_time(upstream.connect_timeout)};",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
    ]
    return ["location / {", *(INDENT + line for line in body), "}"]


def _server(config: LbConfig, server: Server, h2_ports: set[tuple[str, int]]) -> list[str]:
    lines = [_listen(server, server.tls is not None and server.address in h2_ports),
             f"server_name {' '.join(server.names)};"]
    lines += _tls_lines(server)
    lines += _header_lines(server)
    if server.send_timeout != NGINX_SEND_TIMEOUT_S:
        lines.append(f"send_timeout {nginx_time(server.send_timeout)};")
    if server.redirect is not None:
        lines.append(f"return {server.redirect_status} {quote(server.redirect, variables=True)};")
    else:
        assert server.proxy_pass is not None
        upstream = config.upstreams[server.proxy_pass]
        lines += ["", *_location(server, upstream, bool(config.trusted_proxies))]
    return ["server {", *(INDENT + line if line else "" for line in lines), "}"]


def _http_settings(config: LbConfig, h2: bool) -> list[str]:
    log = config.access_log
    lines = [
        "access_log off;" if log == "off" else
        f"access_log {'/dev/stdout' if log == 'stdout' else quote(log)};",
        f"large_client_header_buffers 4 {nginx_size(config.max_header_size)};",
    ]
    if config.client_header_timeout != NGINX_CLIENT_HEADER_TIMEOUT_S:
        lines.append(f"client_header_timeout {nginx_time(config.client_header_timeout)};")
    if config.keepalive_timeout != NGINX_KEEPALIVE_TIMEOUT_S:
        lines.append(f"keepalive_timeout {nginx_time(config.keepalive_timeout)};")
    if h2:
        lines.append(f"http2_max_concurrent_streams {config.http2.max_concurrent_streams};")
        others = config.http2.model_fields_set - {"max_concurrent_streams"}
        if others:
            lines.append(f"# http2 {', '.join(sorted(others))}: NGINX has its own limits and "
                         "flood defences, not set the same way")
    if config.metrics is not None:
        address, port = config.metrics.address
        lines.append(f"# metrics on {address}:{port}: NGINX open source has no Prometheus "
                     "endpoint (stub_status is the nearest)")
    if _needs_dollar(config):
        lines += ["geo $dollar {", f'{INDENT}default "$";', "}"]
    return lines


def _main_context(config: LbConfig) -> list[str]:
    lines = [f"worker_processes {config.worker_processes};"]
    if config.worker_rlimit_nofile is not None:
        lines.append(f"worker_rlimit_nofile {config.worker_rlimit_nofile};")
    if config.pid_file:
        lines.append(f"pid {quote(config.pid_file)};")
    lines += [
        f"# drain_timeout; NGINX has one timeout for reload and stop (corral lb's "
        f"shutdown_timeout is {nginx_time(config.shutdown_timeout)})",
        f"worker_shutdown_timeout {nginx_time(config.drain_timeout)};",
        "",
        "events {",
        f"{INDENT}worker_connections {config.worker_connections};",
        "}",
    ]
    return lines


def render_nginx(config: LbConfig, *, title: Sequence[str] = ()) -> str:
    """The whole NGINX configuration for `config`; `title` lines open it as comments."""
    h2_ports = _h2_ports(config)
    head = [f"# {line}" if line else "#" for line in title]
    http = _http_settings(config, bool(h2_ports))
    for name, upstream in config.upstreams.items():
        http += ["", *_upstream(name, upstream)]
    http += ["", "map $http_upgrade $connection_upgrade {", f"{INDENT}default Upgrade;",
             f"{INDENT}''      '';", "}"]
    trusted = _trusted(config)
    if trusted:
        http += ["", *trusted]
    for server in config.servers:
        http += ["", *_server(config, server, h2_ports)]
    body = [*_main_context(config), "", "http {", *(INDENT + line if line else "" for line in
                                                    http), "}"]
    return "\n".join([*head, *body]) + "\n"


def render_nginx_text(lb_yaml: str, *, source: str, title: Sequence[str] = ()) -> str:
    """The NGINX configuration for the text of a corral lb file (schema-checked; no file is
    opened): what `corral up` writes as `<stem>.nginx.conf` from the `<stem>.lb.yml` text it
    writes, so the two files always say the same. ConfigError names `source`'s lines."""
    return render_nginx(parse_model(lb_yaml, LbConfig, source=source).model, title=title)


def default_title(source: str) -> list[str]:
    """The opening comment of `corral lb nginx-config`'s output."""
    return [
        f"NGINX configuration equivalent to {source}, printed by `corral lb nginx-config`:",
        "Rancher's example NGINX configuration filled in, with upstream keepalive and the map",
        "that lets ordinary requests keep their upstream connection ('' '', where Rancher's",
        "example has '' close). Check it with nginx -t.",
    ]


def load_for_nginx(path: str | Path) -> LbConfig:
    """The configuration checked as far as rendering needs: the schema and that every
    `proxy_pass` names an upstream. Certificate files are not opened: `nginx -t` checks them
    where NGINX runs. ConfigError lists every problem."""
    loaded = load_model(path, LbConfig)
    config = loaded.model
    problems = [
        loaded.problem(("servers", i, "proxy_pass"),
                       f"upstream {server.proxy_pass!r} is not defined",
                       "name an upstream defined under `upstreams:`, or define this one there")
        for i, server in enumerate(config.servers)
        if server.proxy_pass is not None and server.proxy_pass not in config.upstreams
    ]
    if problems:
        raise ConfigError(problems)
    return config
