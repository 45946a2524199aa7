"""Certificates: CA and issuing, PEM parsing, chain order, SAN and key checks."""

from corral.pki.checks import check_chain_order, check_current, check_key_matches, is_ca, issued_by
from corral.pki.errors import PkiError, PrivateKey
from corral.pki.issue import create_ca, issue_certificate
from corral.pki.names import (
    common_name,
    describe,
    fingerprint_sha256,
    matches_hostname,
    subject_names,
)
from corral.pki.pem import (
    certificate_pem,
    chain_pem,
    decode_base64_pem,
    load_certificates,
    load_private_key,
    parse_certificates,
    parse_private_key,
    private_key_pem,
)

__all__ = [
    "PkiError",
    "PrivateKey",
    "certificate_pem",
    "chain_pem",
    "check_chain_order",
    "check_current",
    "check_key_matches",
    "common_name",
    "create_ca",
    "decode_base64_pem",
    "describe",
    "fingerprint_sha256",
    "is_ca",
    "issue_certificate",
    "issued_by",
    "load_certificates",
    "load_private_key",
    "matches_hostname",
    "parse_certificates",
    "parse_private_key",
    "private_key_pem",
    "subject_names",
]
