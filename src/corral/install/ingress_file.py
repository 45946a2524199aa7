"""The `corral ingress` configuration of one node, from the desired cluster, and its file.

`corral up` calls `ingress_config_for` for every node with the `worker` role, with the HTTP
addresses of the servers (`upstreams`) and the addresses of the external load balancer
(`trusted_proxies`), then `write_ingress_config`; the node's service runs
`corral ingress --config <that file>` (SIGHUP makes it read the file again).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from corral.config.ingress import IngressConfig
from corral.config.ingress_load import ingress_yaml
from corral.install.desired import DesiredCluster, NodeSpec

INGRESS_PORT = 80  # the port the external load balancer reaches each node's ingress on
ANY_ADDRESS = "0.0.0.0"
FILE_MODE = 0o644  # no secrets in it


class IngressSettingsError(ValueError):
    """The cluster file asks for an ingress Corral does not build (the message says why)."""


def ingress_listen(node: NodeSpec, port: int = INGRESS_PORT) -> str:
    """Where the node's ingress listens: the node's address when it is also its internal one
    (each node of a one-machine install has its own 127.0.1.N), else every interface (the
    address may be a public one the host does not hold, such as a cloud's)."""
    if node.address != node.internal_address:
        return f"{ANY_ADDRESS}:{port}"
    try:
        if ipaddress.ip_address(node.address).version == 6:
            return f"[{node.address}]:{port}"
    except ValueError:
        pass  # a host name: bound as written
    return f"{node.address}:{port}"


def ingress_config_for(
    desired: DesiredCluster,
    node: NodeSpec,
    upstreams: Sequence[str],
    trusted_proxies: Sequence[str],
    *,
    port: int = INGRESS_PORT,
) -> IngressConfig:
    """The ingress of `node`: the Ingress host and annotations of `desired`, the servers at
    `upstreams` (host:port of their HTTP listeners), X-Forwarded-* kept from
    `trusted_proxies` (addresses or CIDRs of the external load balancer). Raises
    IngressSettingsError for an Ingress that asks for a redirect, ValueError (pydantic's) for
    a bad upstream or CIDR."""
    settings = desired.ingress
    if settings.ssl_redirect:
        raise IngressSettingsError(
            f"{desired.source}: addons: Ingress cattle-ingress-http: annotation "
            'nginx.ingress.kubernetes.io/ssl-redirect is "true", but the ingress serves plain '
            "HTTP behind the external load balancer, which redirects to HTTPS itself (a redirect "
            'here would loop) — fix: set it to "false" as Rancher\'s template does'
        )
    return IngressConfig.model_validate(
        {
            "listen": ingress_listen(node, port),
            "host": settings.host,
            "upstreams": list(upstreams),
            "proxy_connect_timeout": settings.connect_timeout_s,
            "proxy_read_timeout": settings.read_timeout_s,
            "proxy_send_timeout": settings.send_timeout_s,
            "trusted_proxies": list(trusted_proxies),
        }
    )


def write_ingress_config(path: Path | str, config: IngressConfig) -> None:
    """Write `config` as the YAML `corral ingress --config` reads, atomically (a running
    ingress reloading on SIGHUP never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(ingress_yaml(config))
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
