"""`corral cert rotate`'s stages (renew; trust, reissue, retire for a new CA) and `corral up`'s
expiry warnings: pure logic on real certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral import pki
from corral.install.cert_rotation import (
    finished,
    in_progress,
    rotation_stages,
    trust_changed,
)
from corral.install.cert_rotation_expiry import expiring
from corral.install.cluster_pki import (
    ETCD_CLIENT,
    LB_CERT,
    CertPair,
    ClusterPki,
    ensure_pki,
    etcd_cert_name,
    issue,
    wanted_certificates,
)
from tests.support.install_cluster import desired

LB_HOST = "127.0.0.1"


def built() -> ClusterPki:
    """The PKI of a cluster `corral up` built."""
    made, _ = ensure_pki(desired(), None, lb_host=LB_HOST)
    return made


def serials(current: ClusterPki) -> dict[str, int]:
    """name → serial number of every certificate."""
    return {name: pair.certificate().serial_number for name, pair in current.certs.items()}


def signed_by(current: ClusterPki, ca: CertPair) -> bool:
    """True when every certificate of `current` was issued by `ca`'s (first) certificate."""
    authority = ca.certificate()
    return all(pki.issued_by(pair.certificate(), authority) for pair in current.certs.values())


def test_renew_issues_every_certificate_again_from_the_same_ca() -> None:
    """Without --rotate-ca: one stage, every certificate new (new key too), the same CA, and
    `corral up` keeps them as they are."""
    old = built()
    (stage,) = rotation_stages(desired(), old, rotate_ca=False, lb_host=LB_HOST)
    assert stage.name == "renew"
    assert stage.pki.ca == old.ca
    assert set(stage.pki.certs) == set(old.certs)
    for name, pair in stage.pki.certs.items():
        assert pair.certificate().serial_number != old.certs[name].certificate().serial_number
        assert pair.key_pem != old.certs[name].key_pem, name
    assert signed_by(stage.pki, old.ca)
    again, changed = ensure_pki(desired(), stage.pki, lb_host=LB_HOST)
    assert changed == [] and again == stage.pki
    assert in_progress(old) is None


def test_a_new_ca_is_trusted_everywhere_before_it_signs_and_the_old_one_goes_last() -> None:
    """--rotate-ca: trust (old signs, both trusted, certificates unchanged), reissue (new
    signs everything, both trusted), retire (only the new CA trusted)."""
    old = built()
    trust, reissue, retire = rotation_stages(desired(), old, rotate_ca=True, lb_host=LB_HOST)
    assert [s.name for s in (trust, reissue, retire)] == ["trust", "reissue", "retire"]
    old_ca = old.ca.certificate()
    assert trust.pki.pending_ca is not None
    new_ca = trust.pki.pending_ca.certificate()
    assert trust.pki.trusted() == [old_ca, new_ca]
    assert trust.pki.certs == old.certs and trust.pki.ca.key_pem == old.ca.key_pem
    assert reissue.pki.trusted() == [new_ca, old_ca]
    assert reissue.pki.ca.key_pem == trust.pki.pending_ca.key_pem
    assert reissue.pki.pending_ca is None
    assert signed_by(reissue.pki, CertPair(pki.certificate_pem(new_ca).decode(), ""))
    assert set(serials(reissue.pki).values()).isdisjoint(serials(old).values())
    assert retire.pki.trusted() == [new_ca]
    assert retire.pki.certs == reissue.pki.certs
    assert in_progress(old) is None and in_progress(retire.pki) is None


def test_corral_up_during_a_ca_rotation_keeps_the_stage() -> None:
    """At each stage the certificates are what `corral up` wants: nothing reissued, the
    pending CA kept."""
    for stage in rotation_stages(desired(), built(), rotate_ca=True, lb_host=LB_HOST):
        again, changed = ensure_pki(desired(), stage.pki, lb_host=LB_HOST)
        assert changed == [], stage.name
        assert again == stage.pki, stage.name


def test_a_stopped_ca_rotation_continues_from_its_stage() -> None:
    """Stopped in `trust`: the same pending CA is used (no third CA); stopped in `reissue`:
    only reissue and retire are left, with the same certificates."""
    trust, reissue, _ = rotation_stages(desired(), built(), rotate_ca=True, lb_host=LB_HOST)
    assert in_progress(trust.pki) == "trust" and in_progress(reissue.pki) == "reissue"
    again = rotation_stages(desired(), trust.pki, rotate_ca=False, lb_host=LB_HOST)
    assert [s.name for s in again] == ["trust", "reissue", "retire"]
    assert again[0].pki == trust.pki
    assert again[1].pki.ca.key_pem == reissue.pki.ca.key_pem
    later = rotation_stages(desired(), reissue.pki, rotate_ca=True, lb_host=LB_HOST)
    assert [s.name for s in later] == ["reissue", "retire"]
    assert later[0].pki == reissue.pki


def test_a_stopped_renewal_continues_with_the_same_certificates() -> None:
    """Stopped while new certificates roll out: the same certificates are rolled out again
    (no third set), `finished` ends it; with --rotate-ca a CA rotation starts instead."""
    (stage,) = rotation_stages(desired(), built(), rotate_ca=False, lb_host=LB_HOST)
    assert in_progress(stage.pki) == "renew"
    (again,) = rotation_stages(desired(), stage.pki, rotate_ca=False, lb_host=LB_HOST)
    assert again.pki == stage.pki
    assert in_progress(finished(stage.pki)) is None
    assert ClusterPki.from_json(stage.pki.to_json()) == stage.pki
    names = [s.name for s in rotation_stages(desired(), stage.pki, rotate_ca=True,
                                             lb_host=LB_HOST)]
    assert names == ["trust", "reissue", "retire"]


def test_the_state_file_form_keeps_the_pending_ca() -> None:
    """to_json/from_json carry the trust bundle and the pending CA; without a rotation the
    form has no pendingCa."""
    trust = rotation_stages(desired(), built(), rotate_ca=True, lb_host=LB_HOST)[0]
    assert ClusterPki.from_json(trust.pki.to_json()) == trust.pki
    assert "pendingCa" not in built().to_json()


def test_trust_changes_only_when_the_set_of_cas_does() -> None:
    """The order of the CAs in ca.pem does not matter (etcd need not restart); another set
    does, and so does a missing file."""
    trust, reissue, retire = rotation_stages(desired(), built(), rotate_ca=True,
                                             lb_host=LB_HOST)
    both_old_first = trust.pki.ca.cert_pem.encode()
    both_new_first = reissue.pki.ca.cert_pem.encode()
    assert not trust_changed(both_old_first, both_new_first)
    assert trust_changed(both_new_first, retire.pki.ca.cert_pem.encode())
    assert trust_changed(None, both_new_first)


def short_lived(current: ClusterPki, name: str, days: int) -> ClusterPki:
    """`current` with certificate `name` issued again for only `days` days."""
    request = wanted_certificates(desired(), LB_HOST)[name]
    return ClusterPki(current.ca, {**current.certs, name: issue(current.ca, request, days)})


def test_up_warns_of_a_certificate_with_less_than_30_days_naming_node_expiry_and_fix() -> None:
    """etcd:node-2 with 20 days left: named with its node, its expiry date and `corral cert
    rotate --config`; nothing else is named."""
    current = short_lived(built(), etcd_cert_name("node-2"), 20)
    now = datetime.now(UTC)
    (item,) = expiring(desired(), current, now=now)
    end = current.get(etcd_cert_name("node-2")).certificate().not_valid_after_utc
    line = item.line(now)
    assert line.startswith("certificate etcd:node-2 of node [node-2] (its etcd member) expires "
                           f"on {end:%Y-%m-%d %H:%M} UTC (in 19 days)"), line
    assert "run `corral cert rotate --config rancher-cluster.yml`" in line


def test_the_warning_says_when_this_run_reissues_the_certificate() -> None:
    """A certificate `corral up` issues again in this run says so, and still names the
    command that renews without restarting the load balancer."""
    current = short_lived(built(), LB_CERT, 3)
    (item,) = expiring(desired(), current, reissued=[LB_CERT])
    assert item.where == "the load balancer (corral lb)"
    assert "this run issues a new one" in item.fix and "corral cert rotate" in item.fix


def test_an_expiring_cluster_ca_names_rotate_ca() -> None:
    """The CA itself close to its end (seen 3640 days on): `--rotate-ca` is the fix; every
    certificate it signed is named too."""
    later = datetime.now(UTC) + timedelta(days=3640)
    found = {item.certificate: item for item in expiring(desired(), built(), now=later)}
    assert "--rotate-ca" in found["the cluster CA"].fix
    assert found["the cluster CA"].where == "every node"
    assert "expired on" in found[ETCD_CLIENT].line(later)


def test_nothing_is_named_with_more_than_30_days_left() -> None:
    """A fresh cluster: no warning."""
    assert expiring(desired(), built()) == []
