"""Certificates close to their end: what `corral up` warns about before it builds anything.

Each warning names the certificate, where it is used (the node, every node, the load
balancer), when it expires and the command that fixes it: `corral cert rotate` for what the
cluster CA issued, `corral cert rotate --rotate-ca` for the CA itself, a renewed file for the
certificates the cluster file gives (the load balancer's `tls.cert`, the Ingress's `tls.crt`).
`expiring` is pure; `warn_expiring` is the hook `corral up` calls.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from corral import pki
from corral.install.cluster_pki import ETCD_CLIENT, LB_CERT, ClusterPki
from corral.install.desired import DesiredCluster

if TYPE_CHECKING:
    from corral.install.prepare import Prepared
    from corral.install.progress import Progress

WARN_BEFORE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Expiring:
    """One certificate with less than WARN_BEFORE left."""

    certificate: str  # `etcd:node-1`, `the cluster CA`, `load_balancer.tls.cert (…)`
    where: str  # `node [node-1]`, `every node`, `the load balancer`
    not_after: datetime
    fix: str

    def line(self, now: datetime) -> str:
        """The warning as `corral up` prints it."""
        left = self.not_after - now
        when = (f"expired on {self.not_after:%Y-%m-%d %H:%M} UTC" if left <= timedelta(0)
                else f"expires on {self.not_after:%Y-%m-%d %H:%M} UTC (in "
                f"{left.days} days)" if left.days else
                f"expires on {self.not_after:%Y-%m-%d %H:%M} UTC (in "
                f"{int(left.total_seconds() // 3600)} hours)")
        if self.certificate.startswith("the "):  # the cluster CA
            return f"{self.certificate}, trusted by {self.where}, {when}: {self.fix}"
        return f"certificate {self.certificate} of {self.where} {when}: {self.fix}"


def where_used(name: str) -> str:
    """Where the cluster certificate `name` is used."""
    kind, _, node = name.partition(":")
    if kind == "etcd" and node:
        return f"node [{node}] (its etcd member)"
    if kind == "server" and node:
        return f"node [{node}] (its corral server)"
    if name == ETCD_CLIENT:
        return "every node (the etcd client of the servers and supervisors)"
    if name == LB_CERT:
        return "the load balancer (corral lb)"
    return "the cluster"


def _first(pem: str | bytes, what: str) -> x509.Certificate | None:
    try:
        return pki.parse_certificates(pem, what)[0]
    except (pki.PkiError, IndexError):
        return None


def expiring(
    desired: DesiredCluster, current: ClusterPki | None, *, now: datetime | None = None,
    within: timedelta = WARN_BEFORE, reissued: Collection[str] = (),
) -> list[Expiring]:
    """Every certificate of the cluster with less than `within` left (`current`: the PKI of
    the state file; `reissued`: the names this run issues again anyway)."""
    moment = now or datetime.now(UTC)
    config = desired.source.name
    command = f"corral cert rotate --config {config}"
    rotate = f"run `{command}`"
    found: list[Expiring] = []

    def check(cert: x509.Certificate | None, name: str, where: str, fix: str) -> None:
        if cert is not None and cert.not_valid_after_utc - moment < within:
            found.append(Expiring(name, where, cert.not_valid_after_utc, fix))

    if current is not None:
        check(_first(current.ca.cert_pem, "the cluster CA"), "the cluster CA", "every node",
              f"run `{command} --rotate-ca` (a new CA, rolled node by node; then give "
              "clients the new kubeconfig)")
        for name, pair in sorted(current.certs.items()):
            fix = (f"this run issues a new one and restarts what uses it (`{command}` "
                   "renews certificates without restarting the load balancer)"
                   if name in reissued else rotate)
            check(_first(pair.cert_pem, name), name, where_used(name), fix)
    spec = desired.load_balancer
    if spec is not None and spec.cert_file is not None:
        try:
            given = pki.load_certificates(spec.cert_file)[0]
        except (pki.PkiError, OSError, IndexError):
            given = None
        check(given, f"load_balancer.tls.cert ({spec.cert_file})", "the load balancer",
              f"put the renewed certificate (and its key) in {spec.cert_file}, then run "
              f"`corral up --config {config}`")
    if desired.ingress.tls_cert_pem:
        check(_first(desired.ingress.tls_cert_pem, "tls.crt"), "tls.crt of the Ingress's "
              "Secret", "every node (corral ingress)",
              f"put the renewed certificate (base64) in the Secret's tls.crt of {config}, "
              f"then run `corral up --config {config}`")
    return found


def warn_expiring(prepared: Prepared, progress: Progress) -> None:
    """`corral up`'s hook: one warning per certificate with less than WARN_BEFORE left, as
    recorded before this run (the state file on disk)."""
    from corral.install.state import StateError, load_state

    try:
        recorded = load_state(Path(prepared.state_file))
    except StateError:
        recorded = None
    now = datetime.now(UTC)
    for item in expiring(prepared.desired, recorded.pki if recorded else None, now=now,
                         reissued=prepared.pki_changes):
        progress.warn(item.line(now), "certificates")
