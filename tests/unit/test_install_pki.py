"""The cluster CA and what it issues: the right names and usages, reused on a re-run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from corral import pki
from corral.install.cluster_pki import (
    ETCD_CLIENT,
    LB_CERT,
    ensure_pki,
    etcd_cert_name,
    pending_certificates,
    server_cert_name,
)
from corral.install.desired import LoadBalancerSpec
from tests.support.install_cluster import FQDN, desired, node


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    """The extended key usages of `cert`."""
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_every_certificate_is_issued_by_the_cluster_ca_with_its_usages() -> None:
    """etcd members serve and are clients (peers); the etcd client only a client; servers and
    the load balancer only serve."""
    made, changed = ensure_pki(desired(), None)
    ca = made.ca.certificate()
    assert changed[0] == "ca"
    serve, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    expected = {
        etcd_cert_name("node-1"): {serve, client},
        ETCD_CLIENT: {client},
        server_cert_name("node-2"): {serve},
        LB_CERT: {serve},
    }
    for name, wanted in expected.items():
        cert = made.get(name).certificate()
        assert pki.issued_by(cert, ca), name
        assert usages(cert) == wanted, name


def test_names_cover_the_node_addresses_and_the_fqdn() -> None:
    """An etcd member's certificate names its address; the lb's names the FQDN and its IP."""
    made, _ = ensure_pki(desired(), None, lb_host="127.0.0.1")
    dns, ips = pki.subject_names(made.get(etcd_cert_name("node-3")).certificate())
    assert "127.0.77.3" in ips and "localhost" in dns
    dns, ips = pki.subject_names(made.get(LB_CERT).certificate())
    assert dns == [FQDN] and ips == ["127.0.0.1"]


def test_a_rerun_reuses_every_certificate() -> None:
    """Nothing changed in the cluster: the same CA and certificates, nothing reissued."""
    first, _ = ensure_pki(desired(), None)
    second, changed = ensure_pki(desired(), first)
    assert changed == []
    assert second == first
    assert pending_certificates(desired(), first) == []


def test_a_new_node_gets_certificates_and_the_others_keep_theirs() -> None:
    """Adding a node issues its certificates only."""
    first, _ = ensure_pki(desired(), None)
    bigger = desired(nodes=tuple(node(i) for i in (1, 2, 3, 4)))
    assert pending_certificates(bigger, first) == [etcd_cert_name("node-4"),
                                                   server_cert_name("node-4")]
    second, changed = ensure_pki(bigger, first)
    assert changed == [etcd_cert_name("node-4"), server_cert_name("node-4")]
    assert second.get(etcd_cert_name("node-1")) == first.get(etcd_cert_name("node-1"))


def test_a_certificate_close_to_expiry_is_reissued() -> None:
    """Within 30 days of its end a certificate is issued again."""
    first, _ = ensure_pki(desired(), None)
    later = datetime.now(UTC) + timedelta(days=340)
    _, changed = ensure_pki(desired(), first, now=later)
    assert ETCD_CLIENT in changed and "ca" not in changed


def test_no_lb_certificate_without_generate() -> None:
    """With the load balancer's own files, Corral issues no certificate for the FQDN."""
    spec = LoadBalancerSpec(listen=":443", generate=False)
    made, _ = ensure_pki(desired(load_balancer=spec), None)
    assert LB_CERT not in made.certs
