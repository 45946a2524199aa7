"""The `corral lb` configuration: typed models with every default named once.

`docs/lb.md` documents each key; `examples/lb.yml` is Rancher's example NGINX configuration in
this form.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from corral.config.units import Duration, Size

# Defaults, with units in their names.
DEFAULT_WORKER_CONNECTIONS = 1024
DEFAULT_CLIENT_HEADER_TIMEOUT_S = 60.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0
DEFAULT_MAX_HEADER_SIZE_BYTES = 32 * 1024
DEFAULT_READ_TIMEOUT_S = 900.0
DEFAULT_SEND_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_UPSTREAM_KEEPALIVE = 128
DEFAULT_UPSTREAM_IDLE_TIMEOUT_S = 60.0
DEFAULT_FAIL_TIMEOUT_S = 10.0
DEFAULT_CHECK_INTERVAL_S = 5.0
DEFAULT_CHECK_TIMEOUT_S = 2.0
DEFAULT_DRAIN_TIMEOUT_S = 300.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
DEFAULT_H2_MAX_CONCURRENT_STREAMS = 128
DEFAULT_H2_MAX_HEADER_LIST_SIZE_BYTES = 32 * 1024
DEFAULT_H2_INITIAL_WINDOW_SIZE_BYTES = 1024 * 1024
DEFAULT_H2_MAX_RESETS_PER_SECOND = 100
DEFAULT_H2_MAX_CONTROL_FRAMES_PER_SECOND = 100
H2_MAX_WINDOW_BYTES = 2**31 - 1

_HOSTPORT = re.compile(
    r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$"
)


def split_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); ValueError with the accepted forms."""
    match = _HOSTPORT.match(text.strip())
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{text!r} is not host:port (e.g. 10.0.0.5:80 or [::1]:80)")
    return match["ip6"] or match["host"], int(match["port"])


def check_cidr(text: str) -> str:
    """An IPv4/IPv6 address or network (`10.0.0.5`, `10.0.0.0/24`, `fd00::/8`), stripped;
    ValueError otherwise (host bits set: naming the network it probably means)."""
    text = text.strip()
    try:
        ipaddress.ip_network(text)
    except ValueError:
        try:
            meant = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                "is not an address or CIDR (e.g. 10.0.0.5, 10.0.0.0/24, fd00::/8)"
            ) from None
        raise ValueError(f"has host bits set: write {meant}") from None
    return text


Cidr = Annotated[str, AfterValidator(check_cidr)]
"""An address or network, as `trusted_proxies` lists them."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthCheck(_Strict):
    """Active checks: GET `path` on each endpoint every `interval`."""

    path: str = Field("/healthz", description="a path starting with /")
    interval: Duration = Field(DEFAULT_CHECK_INTERVAL_S, gt=0)
    timeout: Duration = Field(DEFAULT_CHECK_TIMEOUT_S, gt=0)
    rise: int = Field(2, ge=1, description="consecutive successes that mark an endpoint up")
    fall: int = Field(3, ge=1, description="consecutive failures that mark an endpoint down")
    host: str | None = Field(None, description="Host header of the check request")

    @field_validator("path")
    @classmethod
    def _path_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with / (e.g. /healthz)")
        return value


class Upstream(_Strict):
    """A named pool of endpoints."""

    servers: list[str] = Field(min_length=1, description="a list of host:port endpoints")
    balance: Literal["round_robin", "least_conn"] = "round_robin"
    keepalive: int = Field(DEFAULT_UPSTREAM_KEEPALIVE, ge=0)
    keepalive_timeout: Duration = Field(DEFAULT_UPSTREAM_IDLE_TIMEOUT_S, gt=0)
    connect_timeout: Duration = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    max_fails: int = Field(1, ge=1)
    fail_timeout: Duration = Field(DEFAULT_FAIL_TIMEOUT_S, gt=0)
    health_check: HealthCheck | None = None

    @field_validator("servers")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for item in value:
            split_host_port(item)
        if len(set(value)) != len(value):
            raise ValueError("lists the same endpoint twice")
        return value


class Certificate(_Strict):
    """A PEM certificate chain (server certificate first) and its private key."""

    cert: str = Field(description="path to a PEM file: server certificate, then intermediates")
    key: str = Field(description="path to the PEM private key of that certificate")


TlsVersion = Literal["TLSv1.2", "TLSv1.3"]
Alpn = Literal["h2", "http/1.1"]
DEFAULT_TLS_PROTOCOLS: tuple[TlsVersion, ...] = ("TLSv1.2", "TLSv1.3")
DEFAULT_ALPN: tuple[Alpn, ...] = ("h2", "http/1.1")
# Key-exchange groups, most preferred first (OpenSSL names; P-256 = prime256v1 = secp256r1).
DEFAULT_TLS_GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")
DEFAULT_HSTS_MAX_AGE_S = 365 * 86400.0
HSTS_PRELOAD_MIN_MAX_AGE_S = 365 * 86400.0  # what the browsers' preload list requires


class Hsts(_Strict):
    """`Strict-Transport-Security` on every response of a TLS server (off unless given)."""

    max_age: Duration = Field(
        DEFAULT_HSTS_MAX_AGE_S, description="whole seconds browsers keep to HTTPS (e.g. 365d)"
    )
    include_subdomains: bool = False
    preload: bool = False

    @field_validator("max_age")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        if value != int(value):
            raise ValueError("must be a whole number of seconds (e.g. 31536000 or 365d)")
        return value

    @property
    def header_value(self) -> str:
        """The header's value: `max-age=31536000; includeSubDomains; preload`."""
        value = f"max-age={int(self.max_age)}"
        if self.include_subdomains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return value


class Tls(_Strict):
    """TLS termination on a listener."""

    certificates: list[Certificate] = Field(min_length=1)
    protocols: list[TlsVersion] = Field(
        default_factory=lambda: list(DEFAULT_TLS_PROTOCOLS), min_length=1
    )
    alpn: list[Alpn] = Field(default_factory=lambda: list(DEFAULT_ALPN), min_length=1)
    groups: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TLS_GROUPS),
        min_length=1,
        description="OpenSSL key-exchange group names, most preferred first",
    )
    hsts: Hsts | None = None


class Server(_Strict):
    """A virtual server: a listener address plus what to do with its requests."""

    listen: str | int = Field(description="a port, or address:port")
    server_name: str | list[str] = Field(description="the FQDN (or a list of names)")
    tls: Tls | None = None
    proxy_pass: str | None = Field(None, description="the name of an upstream")
    redirect: str | None = Field(None, description="a URL template with $server_name $request_uri")
    redirect_status: Literal[301, 302, 307, 308] = 301
    read_timeout: Duration = Field(DEFAULT_READ_TIMEOUT_S, gt=0)
    send_timeout: Duration = Field(DEFAULT_SEND_TIMEOUT_S, gt=0)
    add_response_headers: dict[str, str] = Field(
        default_factory=dict, description="header name: value pairs added to every response"
    )
    hide_response_headers: list[str] = Field(
        default_factory=list, description="names of upstream response headers not passed on"
    )
    pass_h2c_upgrade: bool = Field(
        False, description="forward `Upgrade: h2c` to the upstream (refused by default)"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | int) -> str | int:
        listen_address(value)
        return value

    @field_validator("redirect")
    @classmethod
    def _redirect_vars(cls, value: str | None) -> str | None:
        if value is None:
            return value
        for var in re.findall(r"\$[A-Za-z_]+", value):
            if var not in ("$server_name", "$request_uri"):
                raise ValueError(f"unknown variable {var}: only $server_name and $request_uri")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute URL (https://$server_name$request_uri)")
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Server:
        if (self.proxy_pass is None) == (self.redirect is None):
            raise ValueError("needs exactly one of proxy_pass (an upstream) or redirect (a URL)")
        return self

    @property
    def names(self) -> list[str]:
        """The server names, lower-case."""
        names = [self.server_name] if isinstance(self.server_name, str) else self.server_name
        return [n.lower() for n in names]

    @property
    def address(self) -> tuple[str, int]:
        """(bind address, port)."""
        return listen_address(self.listen)


def listen_address(value: str | int) -> tuple[str, int]:
    """`443`, `"443"`, `"127.0.0.1:443"`, `"[::1]:443"` → (address, port)."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range 1-65535")
        return "0.0.0.0", port
    return split_host_port(value)


class Metrics(_Strict):
    """The admin listener that serves Prometheus metrics."""

    listen: str | int = Field(description="a port (on 127.0.0.1) or address:port")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | int) -> str | int:
        listen_address(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        """(bind address, port); a bare port binds 127.0.0.1, not every interface."""
        if isinstance(self.listen, int) or str(self.listen).strip().isdigit():
            return "127.0.0.1", int(self.listen)
        return listen_address(self.listen)


class Http2(_Strict):
    """HTTP/2 to clients (negotiated by ALPN `h2`): limits and flood defences."""

    max_concurrent_streams: int = Field(DEFAULT_H2_MAX_CONCURRENT_STREAMS, ge=1, le=2**31 - 1)
    max_header_list_size: Size = Field(DEFAULT_H2_MAX_HEADER_LIST_SIZE_BYTES, ge=1024)
    initial_window_size: Size = Field(
        DEFAULT_H2_INITIAL_WINDOW_SIZE_BYTES, ge=65535, le=H2_MAX_WINDOW_BYTES
    )
    max_resets_per_second: int = Field(DEFAULT_H2_MAX_RESETS_PER_SECOND, ge=1)
    max_control_frames_per_second: int = Field(DEFAULT_H2_MAX_CONTROL_FRAMES_PER_SECOND, ge=1)


class LbConfig(_Strict):
    """The whole `corral lb` configuration file."""

    worker_processes: int | Literal["auto"] = "auto"
    worker_connections: int = Field(DEFAULT_WORKER_CONNECTIONS, ge=1)
    worker_rlimit_nofile: int | None = Field(None, ge=64)
    client_header_timeout: Duration = Field(DEFAULT_CLIENT_HEADER_TIMEOUT_S, gt=0)
    keepalive_timeout: Duration = Field(DEFAULT_KEEPALIVE_TIMEOUT_S, gt=0)
    max_header_size: Size = Field(DEFAULT_MAX_HEADER_SIZE_BYTES, ge=1024)
    access_log: str = Field("stdout", description='"stdout", "off" or a file path')
    pid_file: str | None = Field(None, description="where the master writes its pid")
    drain_timeout: Duration = Field(DEFAULT_DRAIN_TIMEOUT_S, gt=0)
    shutdown_timeout: Duration = Field(DEFAULT_SHUTDOWN_TIMEOUT_S, ge=0)
    metrics: Metrics | None = None
    http2: Http2 = Field(default_factory=lambda: Http2.model_validate({}))
    upstreams: dict[str, Upstream] = Field(default_factory=dict)
    servers: list[Server] = Field(min_length=1)
    trusted_proxies: list[Cidr] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-Proto/-Port are kept"
    )

    @field_validator("worker_processes")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or auto)")
        return value

    @property
    def worker_count(self) -> int:
        """`worker_processes` resolved ("auto" = number of cores)."""
        if self.worker_processes == "auto":
            return os.cpu_count() or 1
        return int(self.worker_processes)
