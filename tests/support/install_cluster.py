"""DesiredCluster values built by hand for the installer's unit tests (no cluster file)."""

from __future__ import annotations

from pathlib import Path

from corral.install.desired import (
    ROLES,
    DesiredCluster,
    IngressSettings,
    LoadBalancerSpec,
    NodeSpec,
    ServerSettings,
)

FQDN = "rancher.example.test"


def node(index: int, *, prefix: str = "127.0.77", roles: tuple[str, ...] = ROLES) -> NodeSpec:
    """Node `node-<index>` on `<prefix>.<index>` with `roles`."""
    address = f"{prefix}.{index}"
    return NodeSpec(
        name=f"node-{index}",
        address=address,
        internal_address=address,
        roles=frozenset(roles),  # type: ignore[arg-type]
    )


def desired(
    source: Path = Path("/tmp/corral-unit/rancher-cluster.yml"),
    *,
    nodes: tuple[NodeSpec, ...] | None = None,
    server: ServerSettings | None = None,
    load_balancer: LoadBalancerSpec | None = None,
    with_lb: bool = True,
) -> DesiredCluster:
    """Three all-role nodes, TLS generated for the load balancer on 127.0.0.1:8443 (no
    `load_balancer:` with `with_lb=False`)."""
    default_lb = LoadBalancerSpec(
        listen="127.0.0.1:8443", http_listen="127.0.0.1:8080", generate=True
    )
    return DesiredCluster(
        source=source,
        cluster_name="local",
        provider="local",
        nodes=nodes if nodes is not None else tuple(node(i) for i in (1, 2, 3)),
        server=server or ServerSettings(),
        ingress=IngressSettings(host=FQDN),
        load_balancer=(load_balancer or default_lb) if with_lb else None,
    )
