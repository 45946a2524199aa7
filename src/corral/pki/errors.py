"""The PKI error and the private key types Corral accepts."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""A private key Corral can use for TLS and for signing certificates."""


class PkiError(Exception):
    """A certificate or key problem: ``problem`` says what is wrong, ``fix`` what to do.

    ``str()`` gives both as one sentence; callers that build their own report (a config
    Problem with its own fix field) can use the two parts separately.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}: {fix}" if fix else problem)


def where(source: str) -> str:
    """``" in <source>"`` or ``""``, for messages that name the file when it is known."""
    return f" in {source}" if source else ""
