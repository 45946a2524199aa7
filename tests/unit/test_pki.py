"""The PKI library: PEM parsing, chain order, key match, validity, issuing, names, base64."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral import pki
from corral.pki import PkiError


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A trustme root CA with one intermediate below it."""
    return trustme.CA(organization_name="Corral tests")


@pytest.fixture(scope="module")
def chain(ca: trustme.CA) -> list[x509.Certificate]:
    """server ← intermediate chain as a server would present it."""
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("corral.example.com", common_name="server")
    pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return pki.parse_certificates(pem, "chain.pem")


def _self_signed(
    common_name: str, not_before: datetime, not_after: datetime, san: list[str] | None = None
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if san is not None:
        names = [x509.DNSName(value) for value in san]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


# ------------------------------------------------------------------------------- PEM parsing


def test_load_certificates_reads_every_block_in_order(tmp_path: Path, ca: trustme.CA) -> None:
    """A PEM file with several certificates yields all of them, in file order."""
    leaf = ca.issue_cert("a.example.com", common_name="leaf")
    path = tmp_path / "chain.pem"
    path.write_bytes(b"junk before\n" + leaf.cert_chain_pems[0].bytes() + ca.cert_pem.bytes())
    certs = pki.load_certificates(path)
    assert [pki.common_name(cert) for cert in certs] == ["leaf", ""]
    assert pki.load_certificates(str(path))[1] == certs[1]


def test_garbage_file_is_not_a_certificate(tmp_path: Path) -> None:
    """A file without PEM blocks gives an error that names it and says to give PEM."""
    path = tmp_path / "cert.pem"
    path.write_bytes(b"\x30\x82\x01\x0a garbage")
    with pytest.raises(PkiError, match=r"cert\.pem is not a PEM certificate.*openssl x509"):
        pki.load_certificates(path)


def test_empty_files_are_named(tmp_path: Path) -> None:
    """An empty certificate or key file is reported as empty."""
    path = tmp_path / "empty.pem"
    path.write_bytes(b"\n")
    with pytest.raises(PkiError, match=r"empty\.pem is empty: put the PEM certificate"):
        pki.load_certificates(path)
    with pytest.raises(PkiError, match=r"empty\.pem is empty: put the unencrypted PEM private key"):
        pki.load_private_key(path)


def test_crlf_and_combined_files_parse(ca: trustme.CA) -> None:
    """Windows line endings work, and a cert+key file yields the cert and the key."""
    leaf = ca.issue_cert("a.example.com")
    combined = leaf.cert_chain_pems[0].bytes() + leaf.private_key_pem.bytes()
    crlf = combined.replace(b"\n", b"\r\n")
    (cert,) = pki.parse_certificates(crlf, "both.pem")
    pki.check_key_matches(cert, pki.parse_private_key(crlf, "both.pem"))


def test_damaged_certificate_block_names_its_position() -> None:
    """A PEM block whose body is not a certificate is reported with its position."""
    bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(PkiError, match=r"certificate 1 in c\.pem is damaged"):
        pki.parse_certificates(bad, "c.pem")


def test_key_given_as_certificate_is_named(ca: trustme.CA) -> None:
    """Passing a key file where a certificate belongs says so."""
    key_pem = ca.issue_cert("x.example.com").private_key_pem.bytes()
    with pytest.raises(PkiError, match="holds a private key, not a certificate"):
        pki.parse_certificates(key_pem, "key.pem")


def test_missing_file_names_path(tmp_path: Path) -> None:
    """A missing certificate or key file is reported with its path."""
    with pytest.raises(PkiError, match=r"nope\.pem does not exist"):
        pki.load_certificates(tmp_path / "nope.pem")
    with pytest.raises(PkiError, match=r"nope\.key does not exist"):
        pki.load_private_key(tmp_path / "nope.key")


@pytest.mark.parametrize(
    ("key", "fmt", "label"),
    [
        (rsa.generate_private_key(65537, 2048), "TraditionalOpenSSL", b"RSA PRIVATE KEY"),
        (ec.generate_private_key(ec.SECP256R1()), "TraditionalOpenSSL", b"EC PRIVATE KEY"),
        (ec.generate_private_key(ec.SECP384R1()), "PKCS8", b"BEGIN PRIVATE KEY"),
        (ed25519.Ed25519PrivateKey.generate(), "PKCS8", b"BEGIN PRIVATE KEY"),
    ],
    ids=["rsa-pkcs1", "ec-sec1", "ec-pkcs8", "ed25519-pkcs8"],
)
def test_private_key_formats_load(
    tmp_path: Path, key: pki.PrivateKey, fmt: str, label: bytes
) -> None:
    """PKCS#1, SEC1 and PKCS#8 keys load, and re-serialise as unencrypted PKCS#8."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        getattr(serialization.PrivateFormat, fmt),
        serialization.NoEncryption(),
    )
    assert label in pem
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    loaded = pki.load_private_key(path)
    assert pki.private_key_pem(loaded).startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pki.private_key_pem(loaded) == pki.private_key_pem(key)


@pytest.mark.parametrize("fmt", ["PKCS8", "TraditionalOpenSSL"])
def test_encrypted_key_says_how_to_decrypt(tmp_path: Path, fmt: str) -> None:
    """An encrypted key (PKCS#8 or legacy PEM) is refused with the openssl command to decrypt."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        getattr(serialization.PrivateFormat, fmt),
        serialization.BestAvailableEncryption(b"pass"),
    )
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    with pytest.raises(PkiError) as caught:
        pki.load_private_key(path)
    message = str(caught.value)
    assert "key.pem is encrypted; Corral needs an unencrypted key" in message
    assert f"openssl pkey -in {path} -out {path}.plain" in message


def test_garbage_key_is_refused() -> None:
    """Text without a PRIVATE KEY block is refused, naming the source."""
    with pytest.raises(PkiError, match=r"k\.pem is not a PEM private key"):
        pki.parse_private_key("hello", "k.pem")


def test_damaged_key_is_refused() -> None:
    """A PRIVATE KEY block with a broken body is reported as damaged."""
    bad = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(PkiError, match=r"k\.pem holds a damaged or unsupported private key"):
        pki.parse_private_key(bad, "k.pem")


def test_certificate_given_as_key_is_named(chain: list[x509.Certificate]) -> None:
    """Passing a certificate where a key belongs says so."""
    with pytest.raises(PkiError, match="holds a certificate, not a private key"):
        pki.parse_private_key(pki.certificate_pem(chain[0]), "key.pem")


def test_chain_pem_round_trips(chain: list[x509.Certificate]) -> None:
    """chain_pem output parses back to the same certificates in the same order."""
    assert pki.parse_certificates(pki.chain_pem(chain), "x") == chain


# ------------------------------------------------------------------------------- chain order


def test_chain_in_order_passes(chain: list[x509.Certificate]) -> None:
    """server, then the intermediate that issued it: accepted."""
    pki.check_chain_order(chain, "chain.pem")


def test_single_certificate_passes(chain: list[x509.Certificate]) -> None:
    """A lone server certificate has no order to get wrong."""
    pki.check_chain_order(chain[:1])


def test_reversed_chain_names_positions_and_cns(chain: list[x509.Certificate]) -> None:
    """intermediate before the server certificate: message names both positions and CNs."""
    with pytest.raises(PkiError) as caught:
        pki.check_chain_order([chain[1], chain[0]], "chain.pem")
    message = str(caught.value)
    assert message.startswith("chain.pem: certificate 1 (")
    assert "comes before the certificate it issued, certificate 2 (CN=server)" in message
    assert message.endswith(
        "put the server certificate first, then the intermediates "
        "(here: certificates in the order 2, 1)"
    )


def test_error_carries_problem_and_fix_separately(chain: list[x509.Certificate]) -> None:
    """PkiError splits what is wrong from what to do, for callers with their own fix field."""
    with pytest.raises(PkiError) as caught:
        pki.check_chain_order([chain[1], chain[0]], "chain.pem")
    error = caught.value
    assert error.problem.endswith(
        "comes before the certificate it issued, certificate 2 (CN=server)"
    )
    assert error.fix.startswith("put the server certificate first")
    assert str(error) == f"{error.problem}: {error.fix}"


def test_ca_first_then_leaf_is_refused(ca: trustme.CA) -> None:
    """A CA certificate first with a non-CA later is refused even when unrelated."""
    other = trustme.CA().create_child_ca().issue_cert("x.example.com", common_name="server")
    leaf = pki.parse_certificates(other.cert_chain_pems[0].bytes(), "leaf")[0]
    root = pki.parse_certificates(ca.cert_pem.bytes(), "root")[0]
    with pytest.raises(
        PkiError,
        match=r"certificate 1 .* is a CA certificate and comes before "
        r"certificate 2 \(CN=server\), which is not",
    ):
        pki.check_chain_order([root, leaf])


def test_three_level_chain_with_middle_swapped(ca: trustme.CA) -> None:
    """server, root, intermediate: the server's issuer is later, so the middle is misplaced."""
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("x.example.com", common_name="server")
    server, inter = pki.parse_certificates(b"".join(b.bytes() for b in leaf.cert_chain_pems), "c")
    root = pki.parse_certificates(ca.cert_pem.bytes(), "root")[0]
    pki.check_chain_order([server, inter, root])
    with pytest.raises(PkiError, match=r"in the order 1, 3, 2\)$"):
        pki.check_chain_order([server, root, inter])
    with pytest.raises(PkiError, match=r"certificate 1 \(CN=server\) was issued by certificate 3"):
        pki.check_chain_order([server, _stranger(), inter])


SHA256 = hashes.SHA256()


def _stranger() -> x509.Certificate:
    return _self_signed("stranger", datetime.now(UTC), datetime.now(UTC) + timedelta(days=1))


def test_unrelated_certificate_in_chain(chain: list[x509.Certificate]) -> None:
    """A certificate that did not issue the one before it is named, with the real issuer."""
    stranger = _stranger()
    with pytest.raises(PkiError, match=r"2 \(CN=stranger\) did not issue certificate 1"):
        pki.check_chain_order([chain[0], stranger])


def test_same_issuer_name_but_wrong_signature_is_not_issuer() -> None:
    """Issuer names alone are not enough: the signature must verify with the next key."""
    ca_cert, _ = pki.create_ca("same-name")
    impostor, impostor_key = pki.create_ca("same-name")
    server, _ = pki.issue_certificate(impostor, impostor_key, common_name="s.example.com")
    assert not pki.issued_by(server, ca_cert)
    with pytest.raises(PkiError, match="did not issue"):
        pki.check_chain_order([server, ca_cert])


# ------------------------------------------------------------------------------- key and dates


def test_matching_key_passes(ca: trustme.CA) -> None:
    """The key trustme issued with the certificate matches it."""
    leaf = ca.issue_cert("x.example.com")
    cert = pki.parse_certificates(leaf.cert_chain_pems[0].bytes(), "c")[0]
    pki.check_key_matches(cert, pki.parse_private_key(leaf.private_key_pem.bytes(), "k"))


def test_key_mismatch_names_both_files(chain: list[x509.Certificate]) -> None:
    """Another key is refused; the message names key file, certificate file and CN."""
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(PkiError) as caught:
        pki.check_key_matches(chain[0], other, "cert.pem", key_source="key.pem")
    assert str(caught.value).startswith(
        "the key in key.pem does not match the certificate in cert.pem (CN=server)"
    )


def test_expired_certificate_gives_dates() -> None:
    """An expired certificate is refused with its expiry date and now."""
    cert = _self_signed("old", datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    with pytest.raises(PkiError) as caught:
        pki.check_current(cert, source="cert.pem")
    message = str(caught.value)
    assert "certificate in cert.pem (CN=old) expired on 2021-01-01 00:00:00 UTC" in message
    assert "renew it" in message


def test_not_yet_valid_certificate_gives_dates() -> None:
    """A certificate from the future is refused with its start date and a clock hint."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    cert = _self_signed("future", start, start + timedelta(days=10))
    with pytest.raises(PkiError, match=r"not valid until 2030-01-01 00:00:00 UTC .*clock"):
        pki.check_current(cert, now=datetime(2029, 12, 31, tzinfo=UTC))
    pki.check_current(cert, now=datetime(2030, 1, 5))  # naive datetimes are taken as UTC


# ------------------------------------------------------------------------------- issuing


def test_create_ca_cn_lifetime_and_constraints() -> None:
    """create_ca: requested CN, ECDSA P-256, CA:true, certSign, ten years by default."""
    before = datetime.now(UTC)
    cert, key = pki.create_ca("corral-ca@1700000000")
    assert pki.common_name(cert) == "corral-ca@1700000000"
    assert cert.issuer == cert.subject
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert pki.is_ca(cert)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    lifetime = cert.not_valid_after_utc - before
    ten_years = timedelta(days=3650)
    assert ten_years - timedelta(minutes=1) <= lifetime <= ten_years + timedelta(minutes=1)
    assert cert.not_valid_before_utc <= before
    pki.check_key_matches(cert, key)
    assert pki.issued_by(cert, cert)


def test_issued_certificate_verifies_against_ca() -> None:
    """An issued server certificate chains to its CA, carries the SANs, and is not a CA."""
    ca_cert, ca_key = pki.create_ca("test-ca", days=30)
    cert, key = pki.issue_certificate(
        ca_cert,
        ca_key,
        common_name="corral",
        dns_names=["localhost", "corral.example.com"],
        ip_addresses=["127.0.0.1", "::1"],
        days=7,
    )
    assert pki.issued_by(cert, ca_cert)
    pki.check_chain_order([cert, ca_cert])
    pki.check_key_matches(cert, key)
    pki.check_current(cert)
    assert not pki.is_ca(cert)
    assert pki.subject_names(cert) == (["localhost", "corral.example.com"], ["127.0.0.1", "::1"])
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < lifetime <= timedelta(days=7)


def test_issued_certificate_never_outlives_its_ca() -> None:
    """A 365-day certificate from a 10-day CA ends when the CA ends."""
    ca_cert, ca_key = pki.create_ca("short-ca", days=10)
    cert, _ = pki.issue_certificate(ca_cert, ca_key, common_name="x.example.com")
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_client_certificate_usage() -> None:
    """client=True, server=False gives a clientAuth-only certificate."""
    ca_cert, ca_key = pki.create_ca("test-ca")
    cert, _ = pki.issue_certificate(ca_cert, ca_key, common_name="admin", server=False, client=True)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_server_certificate_without_names_uses_cn_as_dns() -> None:
    """No SANs given: the CN becomes the DNS SAN so hostname checks still work."""
    ca_cert, ca_key = pki.create_ca("test-ca")
    cert, _ = pki.issue_certificate(ca_cert, ca_key, common_name="node-1.example.com")
    assert pki.subject_names(cert) == (["node-1.example.com"], [])


def test_issue_rejects_bad_names() -> None:
    """A bad IP address or DNS name is refused with a PkiError naming the value."""
    ca_cert, ca_key = pki.create_ca("test-ca")
    with pytest.raises(PkiError, match="'not-an-ip' is not an IP address"):
        pki.issue_certificate(ca_cert, ca_key, common_name="x", ip_addresses=["not-an-ip"])
    with pytest.raises(PkiError, match="'bad name' is not a valid DNS name"):
        pki.issue_certificate(ca_cert, ca_key, common_name="x", dns_names=["bad name"])


def test_issue_with_rsa_and_ed25519_ca_keys() -> None:
    """Certificates verify when the CA key (e.g. loaded from a user's file) is RSA or Ed25519."""
    for ca_key in (rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate()):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(1)
            .not_valid_before(datetime.now(UTC) - timedelta(days=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=100))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else SHA256)
        )
        cert, _ = pki.issue_certificate(ca_cert, ca_key, common_name="s.example.com")
        assert pki.issued_by(cert, ca_cert)


# ------------------------------------------------------------------------------- names


def test_fingerprint_format(chain: list[x509.Certificate]) -> None:
    """SHA-256 fingerprint: 32 uppercase hex pairs separated by colons."""
    value = pki.fingerprint_sha256(chain[0])
    parts = value.split(":")
    assert len(parts) == 32
    assert value == value.upper()
    assert bytes.fromhex("".join(parts)) == chain[0].fingerprint(hashes.SHA256())


def test_cn_counts_as_dns_name_only_without_san() -> None:
    """Without a SAN extension the CN is the DNS name; with one, the CN is ignored."""
    now = datetime.now(UTC)
    bare = _self_signed("legacy.example.com", now, now + timedelta(days=1))
    assert pki.subject_names(bare) == (["legacy.example.com"], [])
    assert pki.matches_hostname(bare, "legacy.example.com")
    with_san = _self_signed("legacy.example.com", now, now + timedelta(days=1), ["a.example.com"])
    assert pki.subject_names(with_san) == (["a.example.com"], [])
    assert not pki.matches_hostname(with_san, "legacy.example.com")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("corral.example.com", True),
        ("CORRAL.Example.com.", True),
        ("a.wild.example.com", True),
        ("wild.example.com", False),
        ("a.b.wild.example.com", False),
        ("example.com", False),
        ("127.0.0.1", True),
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),
        ("[::1]", True),
        ("127.0.0.2", False),
        ("", False),
        ("evil.com", False),
    ],
)
def test_matches_hostname(name: str, expected: bool) -> None:
    """Exact DNS, single-label wildcard, and IP SANs match; nothing else does."""
    ca_cert, ca_key = pki.create_ca("test-ca")
    cert, _ = pki.issue_certificate(
        ca_cert,
        ca_key,
        common_name="corral",
        dns_names=["corral.example.com", "*.wild.example.com"],
        ip_addresses=["127.0.0.1", "::1"],
    )
    assert pki.matches_hostname(cert, name) is expected


def test_wildcard_over_a_public_suffix_matches_nothing() -> None:
    """'*.com' is not honoured as a wildcard."""
    now = datetime.now(UTC)
    cert = _self_signed("x", now, now + timedelta(days=1), ["*.com"])
    assert not pki.matches_hostname(cert, "example.com")


# ------------------------------------------------------------------------------- base64 fields


def test_decode_base64_pem_round_trip(ca: trustme.CA) -> None:
    """A one-line base64 of a PEM file decodes to the PEM."""
    pem = ca.cert_pem.bytes()
    assert pki.decode_base64_pem(base64.b64encode(pem).decode(), "cacerts.pem") == pem


def test_base64_with_line_breaks_says_base64_w0(ca: trustme.CA) -> None:
    """base64 wrapped at 76 columns (plain `base64`) is refused with the -w0 advice."""
    wrapped = base64.encodebytes(ca.cert_pem.bytes()).decode()
    assert "\n" in wrapped.strip()
    with pytest.raises(PkiError) as caught:
        pki.decode_base64_pem(wrapped, "addons: cacerts.pem")
    message = str(caught.value)
    assert "base64 in addons: cacerts.pem contains line breaks" in message
    assert "`base64 -w0 FILE`" in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("not*base64!", "not valid base64"),
        ("QUJD", "not PEM"),
        ("-----BEGIN CERTIFICATE-----", "plain PEM, but base64 is expected"),
    ],
)
def test_decode_base64_pem_rejects(text: str, match: str) -> None:
    """Empty, invalid base64, non-PEM content and unencoded PEM each get their own message."""
    with pytest.raises(PkiError, match=match):
        pki.decode_base64_pem(text, "cacerts")
