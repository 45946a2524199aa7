"""The PKI error and the private key types Corral accepts."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""A private key Corral can use for TLS and for signing certificates."""


class PkiError(Exception):
    """A certificate or key problem; the message says what is wrong and how to fix it."""


def where(source: str) -> str:
    """``" in <source>"`` or ``""``, for messages that name the file when it is known."""
    return f" in {source}" if source else ""
