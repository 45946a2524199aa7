"""doctor's TLS verdicts (pure): versions, chain order and completeness, names, expiry,
cacerts signing the served chain, and the agent's checksum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trustme
from cryptography import x509

from corral import pki
from corral.doctor.model import Status
from corral.doctor.tls_logic import (
    Anchor,
    CacertsFacts,
    agent_checksum,
    cacerts_result,
    chain_result,
    checksum_result,
    expiry_result,
    names_result,
    versions_result,
)
from corral.doctor.tls_probe import ACCEPTED, REFUSED, UNTESTABLE, VersionProbe


def _pems(blobs: list[trustme.Blob]) -> list[x509.Certificate]:
    return pki.parse_certificates(b"".join(blob.bytes() for blob in blobs), "test")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A root CA."""
    return trustme.CA(organization_name="doctor unit tests")


@pytest.fixture(scope="module")
def root(ca: trustme.CA) -> x509.Certificate:
    """The root CA's certificate."""
    return _pems([ca.cert_pem])[0]


@pytest.fixture(scope="module")
def deep_chain(ca: trustme.CA) -> list[x509.Certificate]:
    """leaf ← issuing intermediate ← upper intermediate, in the right order."""
    leaf = ca.create_child_ca().create_child_ca().issue_cert("rancher.test",
                                                               common_name="rancher.test")
    return _pems(leaf.cert_chain_pems)


def _versions(**outcomes: str) -> list[VersionProbe]:
    names = {"v10": "TLSv1", "v11": "TLSv1.1", "v12": "TLSv1.2", "v13": "TLSv1.3"}
    return [VersionProbe(names[key], outcome) for key, outcome in outcomes.items()]


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ({"v10": REFUSED, "v11": REFUSED, "v12": ACCEPTED, "v13": ACCEPTED}, Status.PASS),
        ({"v10": REFUSED, "v11": REFUSED, "v12": ACCEPTED, "v13": REFUSED}, Status.PASS),
        ({"v10": UNTESTABLE, "v11": UNTESTABLE, "v12": ACCEPTED, "v13": ACCEPTED}, Status.PASS),
        ({"v10": REFUSED, "v11": ACCEPTED, "v12": ACCEPTED, "v13": ACCEPTED}, Status.FAIL),
        ({"v10": REFUSED, "v11": REFUSED, "v12": REFUSED, "v13": REFUSED}, Status.FAIL),
    ],
)
def test_versions_need_tls12_or_newer_only(outcomes: dict[str, str], status: Status) -> None:
    """TLSv1/1.1 accepted, or neither 1.2 nor 1.3, fails; untestable old versions do not."""
    result = versions_result(_versions(**outcomes))
    assert result.status is status, result.saw
    if status is Status.FAIL:
        assert result.fix is not None and "ssl_protocols TLSv1.2 TLSv1.3;" in result.fix.line()


def test_chain_in_order_issued_by_cacerts_passes(deep_chain: list[x509.Certificate],
                                                  root: x509.Certificate) -> None:
    """leaf ← intermediates, the last issued by the published CA: complete and ordered."""
    result = chain_result(deep_chain, [Anchor(root, "cacerts")], system_error="unknown",
                          private_ca_expected=True, explicit_ca=False)
    assert result.status is Status.PASS
    assert "(cacerts)" in result.saw


def test_swapped_intermediates_fail_naming_the_position(
        deep_chain: list[x509.Certificate], root: x509.Certificate) -> None:
    """Intermediates swapped behind the leaf: the chain check fails, saying where."""
    swapped = [deep_chain[0], deep_chain[2], deep_chain[1]]
    result = chain_result(swapped, [Anchor(root, "cacerts")], system_error=None,
                          private_ca_expected=True, explicit_ca=False)
    assert result.status is Status.FAIL
    assert "certificate 2" in result.saw


def test_root_served_too_is_a_warning(ca: trustme.CA, root: x509.Certificate) -> None:
    """A chain ending with the self-signed root works but is a warning (leave it out)."""
    leaf = _pems([ca.issue_cert("rancher.test").cert_chain_pems[0]])
    result = chain_result([*leaf, root], [], system_error=None, private_ca_expected=False,
                          explicit_ca=False)
    assert result.status is Status.WARN
    assert "root" in result.saw


def test_missing_intermediate_fails_against_the_given_ca(
        deep_chain: list[x509.Certificate], root: x509.Certificate) -> None:
    """Only the leaf served and --ca names the root: an intermediate is missing."""
    result = chain_result(deep_chain[:1], [Anchor(root, "--ca ca.pem")],
                          system_error="unable to get local issuer certificate",
                          private_ca_expected=False, explicit_ca=True)
    assert result.status is Status.FAIL
    assert "intermediate is missing" in result.saw


def test_unknown_issuer_with_a_private_ca_is_not_judged(
        deep_chain: list[x509.Certificate]) -> None:
    """cacerts published but not the issuer: the cacerts check says so; the chain is not run."""
    result = chain_result(deep_chain[:1], [], system_error="unable to get local issuer",
                          private_ca_expected=True, explicit_ca=False)
    assert result.status is Status.SKIP


def test_unknown_issuer_without_cacerts_fails(deep_chain: list[x509.Certificate]) -> None:
    """No cacerts (a recognised CA expected) and the system store cannot complete it: fail."""
    result = chain_result(deep_chain[:1], [], system_error="unable to get local issuer",
                          private_ca_expected=False, explicit_ca=False)
    assert result.status is Status.FAIL


def test_names_cover_the_fqdn_or_fail(deep_chain: list[x509.Certificate]) -> None:
    """The leaf's SANs must include the FQDN."""
    assert names_result(deep_chain[0], "rancher.test").status is Status.PASS
    other = names_result(deep_chain[0], "other.test")
    assert other.status is Status.FAIL
    assert "rancher.test, not other.test" in other.saw


def test_expiry_warns_under_30_days_and_fails_when_expired() -> None:
    """Days left: plenty passes, under 30 warns, past the end fails, before the start fails."""
    cert, _ = pki.create_ca("short", days=40)
    now = datetime.now(UTC)  # after the certificate is made (it is back-dated a few minutes)
    assert expiry_result([cert], now).status is Status.PASS
    warned = expiry_result([cert], now + timedelta(days=20))
    assert warned.status is Status.WARN and "renew" in warned.saw
    assert expiry_result([cert], now + timedelta(days=41)).status is Status.FAIL
    assert expiry_result([cert], now - timedelta(days=2)).status is Status.FAIL


def test_expiry_names_an_intermediate_that_ends_first() -> None:
    """The first certificate of the chain to expire is the one reported."""
    ca_cert, ca_key = pki.create_ca("issuing", days=10)
    leaf, _ = pki.issue_certificate(ca_cert, ca_key, common_name="rancher.test", days=5)
    long_ca, _ = pki.create_ca("long", days=400)
    now = datetime.now(UTC)
    result = expiry_result([leaf, long_ca, ca_cert], now)
    assert result.status is Status.WARN
    assert result.saw.startswith(("4 days left", "5 days left"))  # x509 keeps whole seconds
    assert "first in the chain" not in result.saw
    result = expiry_result([long_ca, ca_cert], now)
    assert "CN=issuing, the first in the chain to expire" in result.saw


def test_cacerts_signing_the_chain_passes_else_fails(root: x509.Certificate) -> None:
    """Published cacerts: verified → pass; OpenSSL's refusal → fail with the fix to serve a
    chain from that CA."""
    ok = cacerts_result(CacertsFacts(value="PEM", cacerts_error=None), [root])
    assert ok.status is Status.PASS
    bad = cacerts_result(CacertsFacts(value="PEM", cacerts_error="unable to get local issuer"),
                         [root])
    assert bad.status is Status.FAIL
    assert bad.fix is not None and "issued by the CA the server publishes" in bad.fix.line()


def test_no_cacerts_verifies_against_the_system_store() -> None:
    """Nothing published: the chain must verify against the system trust store (or --ca)."""
    assert cacerts_result(CacertsFacts(value="", fallback_error=None), []).status is Status.PASS
    failed = cacerts_result(CacertsFacts(value="", fallback_error="self-signed"), [])
    assert failed.status is Status.FAIL and "system trust store" in failed.saw


def test_no_cacerts_flag_with_a_published_ca_fails(root: x509.Certificate) -> None:
    """--no-cacerts says nothing may be published; a published CA fails."""
    result = cacerts_result(CacertsFacts(value="PEM", no_cacerts=True), [root])
    assert result.status is Status.FAIL
    assert result.fix is not None and "--no-cacerts" in result.fix.line()


def test_cacerts_not_read_is_not_run() -> None:
    """When /v3/settings/cacerts cannot be read the check is not run, with the reason."""
    result = cacerts_result(CacertsFacts(value=None, read_error="302"), [])
    assert result.status is Status.SKIP and "302" in result.saw


def test_checksum_is_what_an_agent_computes() -> None:
    """sha256 of the setting's value, as the agent registration command's --ca-checksum."""
    assert agent_checksum("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_checksum_same_everywhere_passes_and_matches_the_given_one() -> None:
    """Every answer the same: pass, showing the digest; with --ca-checksum it must match."""
    seen = [("the load balancer", "PEM")] * 3 + [("http://n1", "PEM")]
    digest = agent_checksum("PEM")
    assert checksum_result(seen, None).status is Status.PASS
    assert digest in checksum_result(seen, None).saw
    assert checksum_result(seen, digest.upper()).status is Status.PASS
    assert checksum_result(seen, "0" * 64).status is Status.FAIL


def test_different_cacerts_behind_one_name_fail() -> None:
    """Two servers publishing different CAs: agents fail on one of them."""
    seen = [("the load balancer", "A"), ("the load balancer", "B"), ("http://n2", "B")]
    result = checksum_result(seen, None)
    assert result.status is Status.FAIL
    assert "different cacerts" in result.saw and "http://n2" in result.saw


def test_no_cacerts_has_no_checksum_unless_one_was_given() -> None:
    """Nothing published: nothing to check, but a --ca-checksum given then fails."""
    assert checksum_result([("the load balancer", "")], None).status is Status.SKIP
    assert checksum_result([("the load balancer", "")], "0" * 64).status is Status.FAIL
