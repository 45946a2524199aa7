"""Password and token secrets: scrypt password hashes, sha256 token-secret digests, random ids.

Pure functions (no I/O). Password hashing is deliberately slow: call it off the event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# scrypt cost: 2**14 * 8 * 128 bytes = 16 MiB of memory per hash, ~50 ms on one core.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32
SCRYPT_MAXMEM = 64 * 1024 * 1024
PASSWORD_SCHEME = "scrypt"

# Rancher-style resource ids: consonants and digits only, so no words appear by accident.
ID_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
ID_LENGTH = 5
TOKEN_SECRET_BYTES = 32  # 256 bits of entropy


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """An encoded scrypt hash: `scrypt$<n>$<r>$<p>$<salt>$<key>` (salt/key base64url)."""
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    key = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=SCRYPT_KEY_BYTES,
    )
    return f"{PASSWORD_SCHEME}${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches the encoded hash; False for a mismatch or a malformed hash."""
    try:
        scheme, n_text, r_text, p_text, salt_text, key_text = encoded.split("$")
        if scheme != PASSWORD_SCHEME:
            return False
        expected = _unb64(key_text)
        key = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt_text),
            n=int(n_text),
            r=int(r_text),
            p=int(p_text),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key, expected)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so both paths cost the same."""
    return hash_password("corral-no-such-user")


def burn_password_check(password: str) -> None:
    """Spend the same time as a real check (for unknown users: no enumeration by timing)."""
    verify_password(password, _dummy_hash())


def new_token_secret() -> str:
    """A fresh 256-bit token secret (base64url, no padding, never contains ':')."""
    return _b64(secrets.token_bytes(TOKEN_SECRET_BYTES))


def digest_token_secret(secret: str) -> str:
    """The stored form of a token secret: sha256 hex (the secret has 256 bits of entropy,
    so a fast hash is enough)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_secret_matches(secret: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented secret against its stored digest."""
    return hmac.compare_digest(digest_token_secret(secret), stored_digest)


def new_id(prefix: str, length: int = ID_LENGTH) -> str:
    """A random resource id such as `token-x7bq2` (callers retry on the rare collision)."""
    return prefix + "-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_password(length: int = 20) -> str:
    """A random password for the bootstrap admin (letters and digits, easy to copy)."""
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
