"""What a certificate is called: CN, SANs, fingerprint, and hostname matching."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID


def common_name(cert: x509.Certificate) -> str:
    """The subject CN, or ``""`` when the certificate has none."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return ""
    value = values[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def describe(cert: x509.Certificate) -> str:
    """``CN=name`` for messages (the full subject when there is no CN)."""
    name = common_name(cert)
    return f"CN={name}" if name else (cert.subject.rfc4514_string() or "(empty subject)")


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as uppercase colon-separated hex (``AB:CD:…``)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def subject_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate is for; the CN counts only without a SAN."""
    san = _san(cert)
    if san is None:
        name = common_name(cert)
        return ([name] if name else []), []
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _dns_matches(pattern: str, name: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[2:]
    if suffix.count(".") < 1 or "*" in suffix:  # no "*.com", no nested wildcards
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == suffix


def matches_hostname(cert: x509.Certificate, name: str) -> bool:
    """True when ``name`` (a DNS name or IP address) is covered by the certificate."""
    dns, ips = subject_names(cert)
    address = _ip(name)
    if address is not None:
        return any(_ip(ip) == address for ip in ips)
    wanted = name.lower().rstrip(".")
    if not wanted:
        return False
    return any(_dns_matches(pattern, wanted) for pattern in dns)
