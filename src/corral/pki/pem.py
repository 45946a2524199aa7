"""PEM parsing and serialising of certificates and keys, and base64-wrapped PEM fields."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from corral.pki.errors import PkiError, PrivateKey

_CERT_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.DOTALL
)
_SUPPORTED_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_ANY_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _encrypted(source: str) -> PkiError:
    name = source or "KEY"
    return PkiError(
        f"{source or 'the key'} is encrypted; Corral needs an unencrypted key",
        f"decrypt it with `openssl pkey -in {name} -out {name}.plain` and use {name}.plain",
    )


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{what} file {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise PkiError(f"{path} is a directory", f"give the path of the {what} PEM file") from None
    except PermissionError:
        raise PkiError(f"cannot read {path}: permission denied", "make it readable") from None
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}", "check the path") from None


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data


def _labels(data: bytes) -> list[str]:
    return [match.group(1).decode("ascii") for match in _ANY_BLOCK.finditer(data)]


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Read a PEM file holding one or more certificates, in file order."""
    return parse_certificates(_read(path, "certificate"), str(path))


def parse_certificates(data: bytes | str, source: str) -> list[x509.Certificate]:
    """Parse every ``CERTIFICATE`` block in ``data``; ``source`` names it in errors."""
    raw = _as_bytes(data)
    if not raw.strip():
        raise PkiError(f"{source} is empty", "put the PEM certificate (and its chain) in it")
    blocks = _CERT_BLOCK.findall(raw)
    if not blocks:
        labels = _labels(raw)
        if any("PRIVATE KEY" in label for label in labels):
            raise PkiError(
                f"{source} holds a private key, not a certificate",
                "give the certificate file here and the key file as the key",
            )
        if labels:
            raise PkiError(
                f"{source} holds {', '.join(labels)} but no CERTIFICATE block",
                "give a PEM certificate file",
            )
        raise PkiError(
            f"{source} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line)",
            "give a PEM file; convert DER with `openssl x509 -inform der -in F -out F.pem`",
        )
    certificates = []
    for position, block in enumerate(blocks, start=1):
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise PkiError(
                f"certificate {position} in {source} is damaged ({exc})",
                "copy the PEM block again, complete and unmodified",
            ) from None
    return certificates


def load_private_key(path: str | Path) -> PrivateKey:
    """Read an unencrypted PEM private key (PKCS#1, PKCS#8 or SEC1)."""
    return parse_private_key(_read(path, "private key"), str(path))


def parse_private_key(data: bytes | str, source: str) -> PrivateKey:
    """Parse an unencrypted PEM private key; ``source`` names it in errors."""
    raw = _as_bytes(data)
    if not raw.strip():
        raise PkiError(f"{source} is empty", "put the unencrypted PEM private key in it")
    labels = _labels(raw)
    if "ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in raw:
        raise _encrypted(source)
    if not any("PRIVATE KEY" in label for label in labels):
        if "CERTIFICATE" in labels:
            raise PkiError(
                f"{source} holds a certificate, not a private key", "give the key file here"
            )
        raise PkiError(
            f"{source} is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)",
            "give the unencrypted PEM key that belongs to the certificate",
        )
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        raise _encrypted(source) from None
    except (ValueError, binascii.Error) as exc:
        raise PkiError(
            f"{source} holds a damaged or unsupported private key ({exc})",
            "give an unencrypted RSA, ECDSA or Ed25519 key in PEM",
        ) from None
    except UnsupportedAlgorithm as exc:
        raise PkiError(
            f"{source}: unsupported private key ({exc})", "use an RSA, ECDSA or Ed25519 key"
        ) from None
    if not isinstance(key, _SUPPORTED_KEYS):
        raise PkiError(
            f"{source} holds a {type(key).__name__}", "Corral needs an RSA, ECDSA or Ed25519 key"
        )
    return key


def certificate_pem(cert: x509.Certificate) -> bytes:
    """One certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def chain_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Several certificates as concatenated PEM, in the given order."""
    return b"".join(certificate_pem(cert) for cert in certs)


def private_key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def decode_base64_pem(text: str, field: str) -> bytes:
    """Decode a base64 field holding PEM (RKE's ``cacerts.pem``); errors name ``field``."""
    value = text.strip()
    if not value:
        raise PkiError(f"{field} is empty", "put the base64 of the PEM file (`base64 -w0 FILE`)")
    if value.startswith("-----BEGIN"):
        raise PkiError(
            f"{field} holds plain PEM, but base64 is expected", "encode with `base64 -w0 FILE`"
        )
    if re.search(r"\s", value):
        raise PkiError(
            f"the base64 in {field} contains line breaks or spaces",
            "encode with `base64 -w0 FILE` to get a single line",
        )
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PkiError(
            f"{field} is not valid base64 ({exc})", "encode the PEM file with `base64 -w0 FILE`"
        ) from None
    if b"-----BEGIN " not in decoded:
        raise PkiError(
            f"{field} decodes to something that is not PEM",
            "base64-encode the PEM file itself (`base64 -w0 cacerts.pem`)",
        )
    return decoded
