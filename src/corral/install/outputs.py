"""The external load balancer's configurations for the cluster (step 2 of Rancher's HA guide),
written beside the cluster file:

* `<stem>.lb.yml`: a `corral lb` configuration: TLS for the FQDN, the nodes' port 80 as the
  upstream with active `/healthz` checks, port 80 → 301 to HTTPS (docs/lb.md). `corral up`
  runs it when the cluster file has `load_balancer:`;
* `<stem>.nginx.conf`: Rancher's example NGINX configuration filled in for the same cluster,
  for those who run NGINX instead.

Pure: text from the desired cluster, the nodes' endpoints and the certificate paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.config.nginx_render import render_nginx_text
from corral.install.desired import DesiredCluster

LB_SUFFIX = ".lb.yml"
NGINX_SUFFIX = ".nginx.conf"
OUTPUT_MODE = 0o644  # paths and names only, no secrets
HTTPS_PORT = 443
HTTP_PORT = 80
PLACEHOLDER_CERT = "/certs/fullchain.pem"  # the paths of Rancher's example configuration
PLACEHOLDER_KEY = "/certs/privkey.pem"
# /healthz checks of the nodes: a node whose ingress stops answering is out after
# CHECK_FALL x CHECK_INTERVAL_S (+ CHECK_TIMEOUT_S), back after CHECK_RISE good checks
CHECK_INTERVAL_S = 2
CHECK_TIMEOUT_S = 3  # a server's /healthz takes ~1 s while an etcd member is down
CHECK_RISE = 2
CHECK_FALL = 3
SHELL_COMMENT = (  # Rancher's comment on proxy_read_timeout, as written there
    "# This allows the ability for the execute shell window to remain open for up to 15 "
    "minutes. Without this parameter, the default is 1 minute and will automatically close."
)
READ_TIMEOUT_S = 900  # Rancher's proxy_read_timeout 900s: the shell window stays open 15 min


@dataclass(frozen=True, slots=True)
class LbListeners:
    """Where the external load balancer listens: HTTPS, and the port-80 redirect (optional)."""

    https: tuple[str, int]  # (address, port); address "" = every interface
    http: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class LbCertificate:
    """The certificate chain and key the load balancer serves (paths)."""

    cert: str
    key: str
    placeholder: bool = False  # Rancher's example paths: replace them with yours


def lb_config_path(desired: DesiredCluster) -> Path:
    """`<stem>.lb.yml` beside the cluster file."""
    return desired.source.with_name(desired.stem + LB_SUFFIX)


def nginx_config_path(desired: DesiredCluster) -> Path:
    """`<stem>.nginx.conf` beside the cluster file."""
    return desired.source.with_name(desired.stem + NGINX_SUFFIX)


def check_fall_time_s() -> int:
    """The longest a dead node stays in the pool: `fall` failed checks, the last timing out."""
    return CHECK_FALL * CHECK_INTERVAL_S + CHECK_TIMEOUT_S


def _listen(address: str, port: int) -> str:
    if not address or address in ("0.0.0.0", "*"):
        return str(port)
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _https_suffix(port: int) -> str:
    return "" if port == HTTPS_PORT else f":{port}"


def lb_yaml(
    desired: DesiredCluster,
    endpoints: Sequence[str],
    listeners: LbListeners,
    certificate: LbCertificate,
) -> str:
    """`<stem>.lb.yml` (pure)."""
    fqdn = desired.fqdn
    servers = "\n".join(f"      - {endpoint}" for endpoint in endpoints)
    https = _listen(*listeners.https)
    note = (
        "    # Rancher's example paths: put your certificate chain (leaf first) and key here.\n"
        if certificate.placeholder
        else ""
    )
    text = f"""\
# corral lb for cluster {desired.cluster_name}, written by `corral up` from {desired.source.name}:
# Rancher's HA guide, step 2 (external Layer-7 load balancer) with Rancher's example NGINX
# configuration's settings. Run it with `corral lb --config {desired.stem}{LB_SUFFIX}`.
worker_processes: auto
worker_rlimit_nofile: 40000
worker_connections: 8192

upstreams:
  rancher:
    servers:
{servers}
    # what NGINX open source cannot do: take a node out when its /healthz fails
    health_check:
      path: /healthz
      interval: {CHECK_INTERVAL_S}s
      timeout: {CHECK_TIMEOUT_S}s
      rise: {CHECK_RISE}
      fall: {CHECK_FALL}

servers:
  - listen: "{https}"
    server_name: {fqdn}
    tls:
      certificates:
{note}        - cert: {certificate.cert}
          key: {certificate.key}
    proxy_pass: rancher
    read_timeout: {READ_TIMEOUT_S}s
"""
    if listeners.http is not None:
        target = f"https://$server_name{_https_suffix(listeners.https[1])}$request_uri"
        text += f"""
  - listen: "{_listen(*listeners.http)}"
    server_name: {fqdn}
    redirect: {target}
"""
    return text


def nginx_conf(
    desired: DesiredCluster,
    endpoints: Sequence[str],
    listeners: LbListeners,
    certificate: LbCertificate,
) -> str:
    """`<stem>.nginx.conf`: the same load balancer as `<stem>.lb.yml`, as NGINX configuration
    (Rancher's example NGINX configuration filled in for this cluster; pure)."""
    return render_nginx_text(
        lb_yaml(desired, endpoints, listeners, certificate),
        source=lb_config_path(desired).name,
        title=[
            f"NGINX configuration for cluster {desired.cluster_name}, written by `corral up` from "
            f"{desired.source.name}:",
            "Rancher's example NGINX configuration filled in with the same upstreams, names and",
            f"timeouts as {lb_config_path(desired).name}. NGINX open source has no active /healthz",
            "checks: a node that fails is skipped for fail_timeout after max_fails errors.",
        ],
    )
