"""The `corral ingress` configuration: Rancher's Ingress `cattle-ingress-http` for one node.

The ingress is the `corral lb` engine in one fixed shape: a plain-HTTP listener for the
Ingress host, proxying to the servers of every node with active `/healthz` checks. Its keys
are the Ingress's (host, backends) and its annotations' (`proxy-connect-timeout`,
`proxy-read-timeout`, `proxy-send-timeout`, `ssl-redirect`), plus the addresses of the
external load balancer whose `X-Forwarded-*` headers are kept. `to_lb_config` translates it
into the engine's `LbConfig`, so the engine runs unchanged. `docs/ingress.md` documents each key.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.config.lb import Cidr, LbConfig, listen_address, split_host_port
from corral.config.units import Duration

# Defaults, with units in their names.
DEFAULT_LISTEN = ":80"
DEFAULT_PROXY_CONNECT_TIMEOUT_S = 30.0  # Rancher's template: proxy-connect-timeout "30"
DEFAULT_PROXY_READ_TIMEOUT_S = 1800.0  # Rancher's template: proxy-read-timeout "1800"
DEFAULT_PROXY_SEND_TIMEOUT_S = 1800.0  # Rancher's template: proxy-send-timeout "1800"
DEFAULT_CHECK_INTERVAL_S = 3.0
DEFAULT_CHECK_TIMEOUT_S = 2.0
DEFAULT_CHECK_RISE = 2
DEFAULT_CHECK_FALL = 2
DEFAULT_WORKERS = 1
DEFAULT_ACCESS_LOG = "stdout"

HEALTH_PATH = "/healthz"  # what every corral server answers 200 ok on, over plain HTTP
UPSTREAM_NAME = "rancher"  # the Ingress's backend: Service `rancher`, port 80

_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
_ONLY_PORT = re.compile(r"^:(\d{1,5})$")

SSL_REDIRECT_REFUSED = (
    "must be false: the ingress serves plain HTTP behind the external load balancer, which "
    "terminates TLS and redirects port 80 itself (a redirect here would loop)"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngressHealthCheck(_Strict):
    """Active checks of every server's `/healthz`."""

    interval: Duration = Field(DEFAULT_CHECK_INTERVAL_S, gt=0)
    timeout: Duration = Field(DEFAULT_CHECK_TIMEOUT_S, gt=0)
    rise: int = Field(DEFAULT_CHECK_RISE, ge=1, description="successes that mark a server up")
    fall: int = Field(DEFAULT_CHECK_FALL, ge=1, description="failures that mark a server down")


def ingress_listen(value: str | int) -> tuple[str, int]:
    """`":80"`, `80`, `"10.0.0.5:80"`, `"[::1]:80"` → (bind address, port); `:80` is every
    IPv4 interface."""
    if isinstance(value, str):
        match = _ONLY_PORT.match(value.strip())
        if match:
            value = int(match.group(1))
    return listen_address(value)


class IngressConfig(_Strict):
    """The whole `corral ingress` configuration file."""

    listen: str | int = Field(DEFAULT_LISTEN, description="address:port, or :port")
    host: str = Field(description="the FQDN of the Ingress rule (Rancher's <FQDN>)")
    upstreams: list[str] = Field(min_length=1, description="the servers' host:port (HTTP)")
    proxy_connect_timeout: Duration = Field(DEFAULT_PROXY_CONNECT_TIMEOUT_S, gt=0)
    proxy_read_timeout: Duration = Field(DEFAULT_PROXY_READ_TIMEOUT_S, gt=0)
    proxy_send_timeout: Duration = Field(DEFAULT_PROXY_SEND_TIMEOUT_S, gt=0)
    ssl_redirect: bool = Field(False, description='false (the template\'s "false")')
    health_check: IngressHealthCheck = Field(
        default_factory=lambda: IngressHealthCheck.model_validate({})
    )
    trusted_proxies: list[Cidr] = Field(
        default_factory=list, description="CIDRs of the external load balancer"
    )
    workers: int = Field(DEFAULT_WORKERS, ge=1)
    access_log: str = Field(DEFAULT_ACCESS_LOG, description='"stdout", "off" or a file path')

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | int) -> str | int:
        ingress_listen(value)
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        text = value.strip().rstrip(".").lower()
        if "<" in text or ">" in text or text == "fqdn":
            raise ValueError(
                f"{value!r} is the template's placeholder: write the name clients use "
                "(e.g. rancher.example.com)"
            )
        if not _HOST.match(text):
            raise ValueError(f"{value!r} is not a DNS name (e.g. rancher.example.com)")
        return text

    @field_validator("upstreams")
    @classmethod
    def _upstreams(cls, value: list[str]) -> list[str]:
        for item in value:
            split_host_port(item)
        if len(set(value)) != len(value):
            raise ValueError("lists the same server twice")
        return value

    @field_validator("ssl_redirect")
    @classmethod
    def _no_redirect(cls, value: bool) -> bool:
        if value:
            raise ValueError(SSL_REDIRECT_REFUSED)
        return value

    @property
    def address(self) -> tuple[str, int]:
        """(bind address, port) of the listener."""
        return ingress_listen(self.listen)


def to_lb_config(config: IngressConfig) -> LbConfig:
    """The engine configuration that is this ingress: one plain-HTTP server for `host`
    proxying to the `rancher` upstream (the servers, `/healthz`-checked)."""
    address, port = config.address
    check = config.health_check
    upstream = {
        "servers": list(config.upstreams),
        "connect_timeout": config.proxy_connect_timeout,
        "health_check": {
            "path": HEALTH_PATH,
            "interval": check.interval,
            "timeout": check.timeout,
            "rise": check.rise,
            "fall": check.fall,
        },
    }
    server = {
        "listen": f"[{address}]:{port}" if ":" in address else f"{address}:{port}",
        "server_name": config.host,
        "proxy_pass": UPSTREAM_NAME,
        "read_timeout": config.proxy_read_timeout,
        "send_timeout": config.proxy_send_timeout,
    }
    return LbConfig.model_validate(
        {
            "worker_processes": config.workers,
            "access_log": config.access_log,
            "trusted_proxies": list(config.trusted_proxies),
            "upstreams": {UPSTREAM_NAME: upstream},
            "servers": [server],
        }
    )
