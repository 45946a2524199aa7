"""`corral cert rotate`'s plan (RKE's `rke cert rotate`): the cluster PKI at each stage of a
rotation, pure apart from generating keys.

Without `--rotate-ca` there is one stage, `renew`: every certificate the cluster CA issued
(etcd members, the etcd client, the servers, the load balancer's) is issued again, with new
keys, by the same CA. Every node keeps trusting the same CA, so the roll can go node by node in
any order.

With `--rotate-ca` a new CA is made and the roll takes three stages, each rolled over every
node before the next begins, so that nothing ever meets a certificate it does not trust:

    trust     every node trusts the old and the new CA (`ca.pem` holds both); the old CA
              still signs, every certificate is unchanged
    reissue   the new CA signs: every certificate is issued again by it; the nodes still
              trust both, so a node with a new certificate and one with an old one talk
    retire    the nodes trust only the new CA

The stage is recorded in the state file (`ClusterPki.renewing`: `renew`; `pending_ca` set:
`trust`; `ca.cert_pem` with two certificates and no pending CA: `reissue`), so a rotation that
stopped continues from its stage when run again, with the same certificates (and `corral up`
keeps the cluster at that stage).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from corral import pki
from corral.install.cluster_pki import (
    CertPair,
    ClusterPki,
    issue,
    new_ca,
    wanted_certificates,
)
from corral.install.desired import DesiredCluster

StageName = Literal["renew", "trust", "reissue", "retire"]
WHAT: dict[StageName, str] = {
    "renew": "new certificates from the cluster CA",
    "trust": "every node trusts the old and the new cluster CA",
    "reissue": "new certificates from the new cluster CA",
    "retire": "every node trusts only the new cluster CA",
}


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a rotation: its name and the cluster PKI the nodes get in it."""

    name: StageName
    pki: ClusterPki

    @property
    def what(self) -> str:
        """What the stage does, for the progress lines."""
        return WHAT[self.name]


def _pem(cert: x509.Certificate) -> str:
    return pki.certificate_pem(cert).decode()


def in_progress(current: ClusterPki) -> StageName | None:
    """The rotation stage the state file is in (None: no rotation is under way)."""
    if current.renewing:
        return "renew"
    if current.pending_ca is not None:
        return "trust"
    if len(current.trusted()) > 1:
        return "reissue"
    return None


def reissue_all(desired: DesiredCluster, current: ClusterPki, lb_host: str = "") -> ClusterPki:
    """Every certificate the cluster needs, issued again (new keys) by the signing CA."""
    certs = {name: issue(current.ca, request)
             for name, request in wanted_certificates(desired, lb_host).items()}
    return replace(current, certs=certs)


def finished(current: ClusterPki) -> ClusterPki:
    """The PKI once the last stage is rolled out everywhere (no rotation under way)."""
    return replace(current, renewing=False)


def begin_ca_rotation(
    current: ClusterPki, cluster_name: str, now: datetime | None = None
) -> ClusterPki:
    """`trust`: a new CA, trusted beside the old one, which still signs."""
    fresh = new_ca(cluster_name, now)
    signing = _pem(current.trusted()[0])
    bundle = CertPair(signing + fresh.cert_pem, current.ca.key_pem)
    return replace(current, ca=bundle, pending_ca=fresh)


def switch_to_new_ca(
    desired: DesiredCluster, current: ClusterPki, lb_host: str = ""
) -> ClusterPki:
    """`reissue`: the pending CA signs every certificate anew; both CAs stay trusted."""
    if current.pending_ca is None:
        raise ValueError("no new CA is pending: the rotation did not begin")
    old = _pem(current.trusted()[0])
    signing = CertPair(current.pending_ca.cert_pem + old, current.pending_ca.key_pem)
    return reissue_all(desired, ClusterPki(signing, current.certs), lb_host)


def retire_old_ca(current: ClusterPki) -> ClusterPki:
    """`retire`: only the signing (new) CA is trusted."""
    signing = _pem(current.trusted()[0])
    return replace(current, ca=CertPair(signing, current.ca.key_pem), pending_ca=None)


def rotation_stages(
    desired: DesiredCluster, current: ClusterPki, *, rotate_ca: bool, lb_host: str = "",
    now: datetime | None = None,
) -> list[Stage]:
    """The stages that take `current` to the end of the rotation asked for, each with the
    PKI its roll gives the nodes. A CA rotation under way is finished from its stage (the
    stage it stopped in is rolled again: nodes already at it change nothing)."""
    stage = in_progress(current)
    if stage == "renew":  # new certificates were being rolled out: the same ones
        if not rotate_ca:
            return [Stage("renew", current)]
        current, stage = finished(current), None  # a new CA reissues everything anyway
    if stage is None and not rotate_ca:
        return [Stage("renew", replace(reissue_all(desired, current, lb_host), renewing=True))]
    stages: list[Stage] = []
    if stage is None:
        current = begin_ca_rotation(current, desired.cluster_name, now)
        stage = "trust"
    if stage == "trust":
        stages.append(Stage("trust", current))
        current = switch_to_new_ca(desired, current, lb_host)
    stages.append(Stage("reissue", current))
    stages.append(Stage("retire", retire_old_ca(current)))
    return stages


def trust_changed(before_pem: bytes | None, after_pem: bytes) -> bool:
    """True when two CA files trust different sets of CAs (the order does not matter): etcd
    3.4 reads its trusted CA file only when it starts (its own certificate and key it reads
    again for every new TLS handshake), so only then must a member restart."""
    if before_pem is None:
        return True
    try:
        before = {c.fingerprint(hashes.SHA256()) for c in pki.parse_certificates(before_pem, "ca")}
        after = {c.fingerprint(hashes.SHA256()) for c in pki.parse_certificates(after_pem, "ca")}
    except pki.PkiError:
        return True
    return before != after
