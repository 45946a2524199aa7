"""The cluster CA that `corral up` creates and keeps in the state file, and what it issues.

Like RKE's certificates in cluster.rkestate: one CA per cluster; per etcd node a member
certificate (serverAuth + clientAuth: the same pair serves clients and talks to peers); one
etcd client certificate for the servers and the node supervisors; per controlplane node a
serving certificate for `corral server`'s HTTPS listener; with `tls: {generate: true}` the
FQDN's certificate for the external load balancer.

`ensure_pki` is pure apart from generating keys: it reuses every recorded certificate that is
still what is wanted (same names and usages, issued by the CA, more than RENEW_BEFORE left) and
issues the rest, so a re-run changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from corral import pki
from corral.install.desired import DesiredCluster, NodeSpec
from corral.pki.issue import CERT_DAYS

RENEW_BEFORE = timedelta(days=30)
ETCD_CLIENT = "etcd-client"
LB_CERT = "lb"


@dataclass(frozen=True, slots=True)
class CertPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: str
    key_pem: str

    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return pki.parse_certificates(self.cert_pem, "certificate")[0]

    def to_json(self) -> dict[str, str]:
        """The state file's form."""
        return {"cert": self.cert_pem, "key": self.key_pem}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CertPair:
        """Parse the state file's form."""
        return cls(str(data["cert"]), str(data["key"]))


@dataclass(frozen=True, slots=True)
class CertRequest:
    """What one certificate must say."""

    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = True
    client: bool = False


@dataclass(frozen=True, slots=True)
class ClusterPki:
    """The CA and every certificate it issued for the cluster, by name (`etcd:<node>`,
    `server:<node>`, `etcd-client`, `lb`).

    `ca.cert_pem` is what every node trusts: the signing CA first, then, while `corral cert
    rotate --rotate-ca` runs, the other CA of the rotation (a trust bundle); `ca.key_pem` is
    the signing CA's key. `pending_ca` is the next CA while it is trusted but does not sign
    yet (the first step of a CA rotation); `renewing` is set while new certificates of the
    same CA are rolled out."""

    ca: CertPair
    certs: Mapping[str, CertPair] = field(default_factory=dict)
    pending_ca: CertPair | None = None
    renewing: bool = False

    def get(self, name: str) -> CertPair:
        """The certificate `name`; KeyError when it was not issued."""
        return self.certs[name]

    def signing_ca_pem(self) -> str:
        """The PEM of the CA that signs (the first of `ca.cert_pem`): what a chain ends with."""
        return pki.certificate_pem(self.trusted()[0]).decode()

    def trusted(self) -> list[x509.Certificate]:
        """Every CA the nodes trust now (the signing CA first)."""
        return pki.parse_certificates(self.ca.cert_pem, "the cluster CA")

    def to_json(self) -> dict[str, Any]:
        """The state file's form."""
        data: dict[str, Any] = {
            "ca": self.ca.to_json(),
            "certs": {name: pair.to_json() for name, pair in sorted(self.certs.items())},
        }
        if self.pending_ca is not None:
            data["pendingCa"] = self.pending_ca.to_json()
        if self.renewing:
            data["renewing"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterPki:
        """Parse the state file's form."""
        certs = {str(k): CertPair.from_json(v) for k, v in dict(data.get("certs") or {}).items()}
        pending = data.get("pendingCa")
        return cls(CertPair.from_json(data["ca"]), certs,
                   CertPair.from_json(pending) if pending else None, bool(data.get("renewing")))


def etcd_cert_name(node: str) -> str:
    """The name of node `node`'s etcd member certificate."""
    return f"etcd:{node}"


def server_cert_name(node: str) -> str:
    """The name of node `node`'s `corral server` serving certificate."""
    return f"server:{node}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _names(*values: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split host names and addresses into (DNS names, IP addresses), sorted, deduplicated."""
    dns = {v.lower() for v in values if v and not _is_ip(v)}
    ips = {v for v in values if v and _is_ip(v)}
    return tuple(sorted(dns)), tuple(sorted(ips))


def node_hosts(node: NodeSpec) -> tuple[str, ...]:
    """Every name and address a node is reached by."""
    return (node.name, node.address, node.internal_address)


def wanted_certificates(desired: DesiredCluster, lb_host: str = "") -> dict[str, CertRequest]:
    """Every certificate the cluster needs, by name (pure)."""
    wanted: dict[str, CertRequest] = {
        ETCD_CLIENT: CertRequest("corral-etcd-client", server=False, client=True),
    }
    for node in desired.nodes_with("etcd"):
        dns, ips = _names("localhost", *node_hosts(node))
        wanted[etcd_cert_name(node.name)] = CertRequest(
            f"etcd-{node.name}", dns, ips, server=True, client=True
        )
    for node in desired.nodes_with("controlplane"):
        dns, ips = _names(desired.fqdn, *node_hosts(node))
        wanted[server_cert_name(node.name)] = CertRequest(desired.fqdn, dns, ips, server=True)
    spec = desired.load_balancer
    if spec is not None and spec.generate:
        dns, ips = _names(desired.fqdn, lb_host if lb_host not in ("0.0.0.0", "::") else "")
        wanted[LB_CERT] = CertRequest(desired.fqdn, dns, ips, server=True)
    return wanted


def _usages(cert: x509.Certificate) -> tuple[bool, bool]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False, False
    return ExtendedKeyUsageOID.SERVER_AUTH in eku, ExtendedKeyUsageOID.CLIENT_AUTH in eku


def _alt_names(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(sorted(str(n).lower() for n in san.get_values_for_type(x509.DNSName)))
    ips = tuple(sorted(str(a) for a in san.get_values_for_type(x509.IPAddress)))
    return dns, ips


def still_good(
    pair: CertPair, request: CertRequest, ca: x509.Certificate, now: datetime
) -> bool:
    """True when a recorded certificate says what `request` asks, comes from `ca`, and has
    more than RENEW_BEFORE left."""
    try:
        cert = pair.certificate()
        key = pki.parse_private_key(pair.key_pem, "key")
        pki.check_key_matches(cert, key)
    except pki.PkiError:
        return False
    if not pki.issued_by(cert, ca) or cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    if pki.common_name(cert) != request.common_name:
        return False
    if _usages(cert) != (request.server, request.client):
        return False
    return _alt_names(cert) == (request.dns_names, request.ip_addresses)


def issue(ca: CertPair, request: CertRequest, days: int = CERT_DAYS) -> CertPair:
    """A new key and certificate for `request`, signed by the cluster CA (the first
    certificate of `ca.cert_pem`), valid `days` (never longer than the CA)."""
    ca_cert = ca.certificate()
    ca_key = pki.parse_private_key(ca.key_pem, "cluster CA key")
    cert, key = pki.issue_certificate(
        ca_cert,
        ca_key,
        common_name=request.common_name,
        dns_names=request.dns_names,
        ip_addresses=request.ip_addresses,
        days=days,
        server=request.server,
        client=request.client,
    )
    return CertPair(pki.certificate_pem(cert).decode(), pki.private_key_pem(key).decode())


def new_ca(cluster_name: str, now: datetime | None = None) -> CertPair:
    """A new cluster CA (`corral-cluster-ca-<cluster>@<unix time>`)."""
    stamp = int((now or datetime.now(UTC)).timestamp())
    cert, key = pki.create_ca(f"corral-cluster-ca-{cluster_name}@{stamp}")
    return CertPair(pki.certificate_pem(cert).decode(), pki.private_key_pem(key).decode())


def ensure_pki(
    desired: DesiredCluster,
    recorded: ClusterPki | None,
    *,
    lb_host: str = "",
    now: datetime | None = None,
) -> tuple[ClusterPki, list[str]]:
    """The cluster's PKI after this run, and the names of what was created or reissued
    (`ca` for a new CA; a new CA reissues everything)."""
    moment = now or datetime.now(UTC)
    changed: list[str] = []
    if recorded is None:
        ca = new_ca(desired.cluster_name, moment)
        changed.append("ca")
        old: Mapping[str, CertPair] = {}
    else:
        ca, old = recorded.ca, recorded.certs
    ca_cert = ca.certificate()
    certs: dict[str, CertPair] = {}
    for name, request in wanted_certificates(desired, lb_host).items():
        pair = old.get(name)
        if pair is not None and still_good(pair, request, ca_cert, moment):
            certs[name] = pair
        else:
            certs[name] = issue(ca, request)
            changed.append(name)
    if recorded is None:
        return ClusterPki(ca, certs), changed
    return replace(recorded, certs=certs), changed


def pending_certificates(
    desired: DesiredCluster,
    recorded: ClusterPki | None,
    *,
    lb_host: str = "",
    now: datetime | None = None,
) -> list[str]:
    """What `ensure_pki` would create or reissue, without generating anything (for the plan)."""
    moment = now or datetime.now(UTC)
    wanted = wanted_certificates(desired, lb_host)
    if recorded is None:
        return ["ca", *wanted]
    ca_cert = recorded.ca.certificate()
    return [
        name
        for name, request in wanted.items()
        if (pair := recorded.certs.get(name)) is None
        or not still_good(pair, request, ca_cert, moment)
    ]
