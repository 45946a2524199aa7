"""Creating a CA and issuing certificates with it (ECDSA P-256)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.pki.errors import PkiError, PrivateKey

CA_DAYS = 3650
CERT_DAYS = 365
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates start this long before "now", so peers with slightly slow clocks accept them."""

_DNS_NAME = re.compile(
    r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.I
)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(common_name: str) -> x509.Name:
    if not common_name:
        raise PkiError("a certificate needs a common name", "give a non-empty common_name")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _check_days(days: int) -> None:
    if days < 1:
        raise PkiError(f"a certificate lifetime of {days} days is too short", "use 1 or more")


def create_ca(common_name: str, days: int = CA_DAYS) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA (ECDSA P-256) valid for ``days``, allowed to sign certificates."""
    _check_days(days)
    key = _new_key()
    now = datetime.now(UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _addresses(values: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for value in values:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            raise PkiError(f"{value!r} is not an IP address", "list it under DNS names") from None
    return names


def _dns(values: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for value in values:
        if not _DNS_NAME.fullmatch(value):
            raise PkiError(
                f"{value!r} is not a valid DNS name for a certificate",
                "use letters, digits, hyphens and dots (a leading `*.` for a wildcard)",
            )
        names.append(x509.DNSName(value.lower()))
    return names


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    *,
    common_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = CERT_DAYS,
    server: bool = True,
    client: bool = False,
) -> tuple[x509.Certificate, PrivateKey]:
    """A new key and a certificate for it signed by the CA (never outliving the CA)."""
    _check_days(days)
    if not (server or client):
        raise PkiError("a certificate must be for something", "set server, client, or both")
    alt_names = _dns(dns_names) + _addresses(ip_addresses)
    if server and not alt_names:
        if not _DNS_NAME.fullmatch(common_name):
            raise PkiError(
                f"a server certificate needs DNS names or IP addresses; {common_name!r} "
                "cannot serve as one",
                "pass dns_names or ip_addresses",
            )
        alt_names = _dns([common_name])
    key = _new_key()
    now = datetime.now(UTC)
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, _hash_for(ca_key)), key
