"""Checks on certificates as users supply them: chain order, key match, validity dates."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from corral.pki.errors import PkiError, PrivateKey, where
from corral.pki.names import describe

_ORDER_FIX = "put the server certificate first, then the intermediates"


def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s subject is ``child``'s issuer and its key signed ``child``."""
    if child.issuer != issuer.subject:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    """True when basicConstraints says CA."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _at(position: int, cert: x509.Certificate) -> str:
    return f"certificate {position} ({describe(cert)})"


def check_chain_order(chain: list[x509.Certificate], source: str = "") -> None:
    """Server certificate first, then each certificate issued by the one after it."""
    prefix = f"{source}: " if source else ""
    if not chain:
        raise PkiError(f"{prefix}no certificates found", "give the server certificate and chain")
    found = _first_order_problem(chain)
    if found is None:
        return
    problem, fix = found
    order = proper_order(chain)
    if order is not None:
        positions = ", ".join(str(index + 1) for index in order)
        fix += f" (here: certificates in the order {positions})"
    raise PkiError(f"{prefix}{problem}", fix)


def proper_order(chain: list[x509.Certificate]) -> list[int] | None:
    """Indexes of ``chain`` in server-first order when all of it forms one path, else None."""
    issued_something = {
        index
        for index, cert in enumerate(chain)
        for other, child in enumerate(chain)
        if other != index and issued_by(child, cert)
    }
    leaves = [index for index in range(len(chain)) if index not in issued_something]
    if len(leaves) != 1:
        return None
    order = leaves
    while len(order) < len(chain):
        current = chain[order[-1]]
        issuers = [
            index
            for index, cert in enumerate(chain)
            if index not in order and issued_by(current, cert)
        ]
        if len(issuers) != 1:
            return None
        order.append(issuers[0])
    return order


def _first_order_problem(chain: list[x509.Certificate]) -> tuple[str, str] | None:
    """(problem, fix) for the first place where ``chain`` is out of order, or None."""
    for index in range(len(chain) - 1):
        child, parent = chain[index], chain[index + 1]
        if not issued_by(child, parent) and issued_by(parent, child):
            return (
                f"{_at(index + 1, child)} comes before the certificate it issued, "
                f"{_at(index + 2, parent)}",
                _ORDER_FIX,
            )
    if is_ca(chain[0]):
        for later, cert in enumerate(chain[1:], start=2):
            if not is_ca(cert):
                return (
                    f"{_at(1, chain[0])} is a CA certificate and comes before {_at(later, cert)}, "
                    "which is not",
                    _ORDER_FIX,
                )
    for index in range(len(chain) - 1):
        child, parent = chain[index], chain[index + 1]
        if issued_by(child, parent):
            continue
        for other in range(index + 2, len(chain)):
            if issued_by(child, chain[other]):
                return (
                    f"{_at(index + 1, child)} was issued by {_at(other + 1, chain[other])}, "
                    f"but {_at(index + 2, parent)} comes between them",
                    f"{_ORDER_FIX}, each followed by the certificate that issued it",
                )
        return (
            f"{_at(index + 2, parent)} did not issue {_at(index + 1, child)} (its issuer is "
            f"{child.issuer.rfc4514_string()})",
            "remove unrelated certificates and include the intermediate that issued it, "
            "in order from the server certificate up",
        )
    return None


def _public_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key_matches(
    cert: x509.Certificate, key: PrivateKey, source: str = "", *, key_source: str = ""
) -> None:
    """The private key must be the one the certificate was issued for."""
    if _public_der(cert.public_key()) == _public_der(key.public_key()):
        return
    the_key = f"the key in {key_source}" if key_source else "the private key"
    raise PkiError(
        f"{the_key} does not match the certificate{where(source)} ({describe(cert)})",
        "use the key the certificate was issued for (or reissue the certificate for this key)",
    )


def _date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_current(cert: x509.Certificate, now: datetime | None = None, source: str = "") -> None:
    """The certificate must be valid at ``now`` (default: the current time)."""
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if moment > end:
        raise PkiError(
            f"the certificate{where(source)} ({describe(cert)}) expired on {_date(end)} "
            f"(now {_date(moment)})",
            "renew it and replace the file",
        )
    if moment < start:
        raise PkiError(
            f"the certificate{where(source)} ({describe(cert)}) is not valid until "
            f"{_date(start)} (now {_date(moment)})",
            "check this machine's clock, or wait",
        )
