"""The command line, environment and files of each role's service."""

from __future__ import annotations

from pathlib import Path

from corral.install.cluster_pki import ClusterPki, ensure_pki
from corral.install.desired import DesiredCluster, ServerSettings
from corral.install.providers.local import LocalProvider
from corral.install.services import (
    SERVER_CACERTS,
    SERVER_CERT,
    ServiceContext,
    lb_service,
    node_services,
    published_cacerts,
)
from tests.support.install_cluster import FQDN, desired, node

BASE = Path("/tmp/corral-unit/base")


def context(cluster: DesiredCluster, made: ClusterPki | None = None) -> ServiceContext:
    """A service context for `cluster` with local node directories under BASE."""
    made = made or ensure_pki(cluster, None)[0]
    provider = LocalProvider(BASE)
    return ServiceContext(
        desired=cluster, pki=made, paths=provider.node_paths, admin_password="pw-secret",
        etcd_token="tok", etcd_members=tuple(n.name for n in cluster.nodes_with("etcd")),
        trusted_proxies=("127.0.0.1",), server_url=f"https://{FQDN}:8443",
        lb_root=provider.lb_paths().root,
    )


def test_each_role_runs_its_service_in_phase_order() -> None:
    """An all-role node runs etcd, then server, then ingress; a worker only the ingress."""
    cluster = desired(nodes=(node(1), node(2, roles=("worker",))))
    ctx = context(cluster)
    assert [s.name for s in node_services(ctx, cluster.nodes[0])] == ["etcd", "server", "ingress"]
    assert [s.name for s in node_services(ctx, cluster.nodes[1])] == ["ingress"]


def test_etcd_member_uses_mutual_tls_on_its_own_address() -> None:
    """Client and peer URLs on the node's address; client and peer certificate auth on; the
    initial cluster lists every etcd node."""
    cluster = desired()
    etcd = node_services(context(cluster), cluster.nodes[1])[0]
    argv = etcd.argv
    assert argv[0] == "/usr/bin/etcd"
    assert "--listen-client-urls=https://127.0.77.2:2379" in argv
    assert "--listen-peer-urls=https://127.0.77.2:2380" in argv
    assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
    initial = next(a for a in argv if a.startswith("--initial-cluster="))
    assert initial.count("https://127.0.77.") == 3
    assert etcd.health.url == "https://127.0.77.2:2379/health" and etcd.health.certfile


def test_server_runs_on_the_etcd_cluster_with_the_deployments_settings() -> None:
    """`corral server` on every etcd endpoint, the server URL, --no-cacerts from the
    Deployment, audit env from it relocated into the node, the bootstrap password."""
    cluster = desired(
        server=ServerSettings(no_cacerts=True, env={"AUDIT_LEVEL": "1",
                                                    "AUDIT_LOG_PATH": "/var/log/a/audit.log"}),
        with_lb=False,
    )
    server = node_services(context(cluster), cluster.nodes[0])[1]
    argv = list(server.argv)
    assert argv[argv.index("--etcd-servers") + 1].count("https://") == 3
    assert argv[argv.index("--bind-address") + 1] == "127.0.77.1"
    assert "--no-cacerts" in argv
    assert server.env["AUDIT_LEVEL"] == "1"
    assert server.env["AUDIT_LOG_PATH"] == str(BASE / "nodes/node-1/rootfs/var/log/a/audit.log")
    assert server.env["CORRAL_BOOTSTRAP_PASSWORD"] == "pw-secret"
    assert "pw-secret" not in server.describe()
    assert SERVER_CERT in server.files and SERVER_CACERTS not in server.files


def test_generated_lb_certificate_makes_the_servers_publish_the_cluster_ca() -> None:
    """tls generate: cacerts.pem in every server's --tls-dir is the cluster CA."""
    cluster = desired()
    ctx = context(cluster)
    server = node_services(ctx, cluster.nodes[0])[1]
    assert server.files[SERVER_CACERTS].content.decode() == ctx.pki.ca.cert_pem
    assert "--no-cacerts" not in server.argv
    assert published_cacerts(ctx) == (ctx.pki.ca.cert_pem, False)


def test_the_secrets_cacerts_wins_over_the_cluster_ca() -> None:
    """With the Secret's cacerts.pem (Rancher's self-signed template), that is published."""
    cluster = desired(server=ServerSettings(cacerts_pem="-----BEGIN CERTIFICATE-----\nX\n"))
    assert published_cacerts(context(cluster))[0].startswith("-----BEGIN CERTIFICATE-----\nX")


def test_ingress_forwards_to_every_server_and_trusts_only_the_lb() -> None:
    """The ingress config lists every controlplane node's server and the lb's address."""
    cluster = desired()
    ingress = node_services(context(cluster), cluster.nodes[2])[2]
    text = next(iter(ingress.files.values())).content.decode()
    for i in (1, 2, 3):
        assert f"127.0.77.{i}:8080" in text
    assert "127.0.0.1" in text and "listen: 127.0.77.3:80" in text


def test_digests_are_stable_and_follow_every_input() -> None:
    """Same inputs, same digest; a new CA changes the digest of every service that has
    certificates (etcd, server), not the ingress's."""
    cluster = desired()
    made, _ = ensure_pki(cluster, None)
    one = node_services(context(cluster, made), cluster.nodes[0])
    two = node_services(context(cluster, made), cluster.nodes[0])
    assert [s.digest for s in one] == [s.digest for s in two]
    other = node_services(context(cluster), cluster.nodes[0])
    assert [a.digest != b.digest for a, b in zip(one, other, strict=True)] == [True, True, False]


def test_lb_probe_pings_through_it_with_the_fqdn() -> None:
    """The lb's probe is GET /ping over TLS with the FQDN as SNI, trusting the cluster CA."""
    cluster = desired()
    lb = lb_service(context(cluster), Path("/tmp/x.lb.yml"), b"cfg")
    assert lb.argv[-3:] == ("lb", "--config", "/tmp/x.lb.yml")
    assert lb.health.url == "https://127.0.0.1:8443/ping"
    assert lb.health.server_name == FQDN and lb.health.cafile
    changed = lb_service(context(cluster, context(cluster).pki), Path("/tmp/x.lb.yml"), b"new")
    assert changed.digest != lb.digest
