"""Credentials: password hashing, token secrets and digests, ids, and reading the token a
request presents (Bearer, Basic, R_SESS cookie)."""

from __future__ import annotations

import base64
import re

import pytest

from corral.server.auth import token_from_headers
from corral.server.domain.credentials import (
    digest_token_secret,
    hash_password,
    new_id,
    new_password,
    new_token_secret,
    token_secret_matches,
    verify_password,
)
from corral.server.domain.tokens import split_token, token_expired

FAST_N = 2**4  # tests hash with a low cost; the production cost is exercised once below


def test_password_hash_round_trip() -> None:
    """The right password verifies; a wrong one does not; the hash hides the password."""
    encoded = hash_password("correct horse battery", n=FAST_N)
    assert verify_password("correct horse battery", encoded)
    assert not verify_password("correct horse batterx", encoded)
    assert "correct" not in encoded
    assert encoded.startswith("scrypt$16$8$1$")


def test_password_hashes_are_salted() -> None:
    """The same password hashes differently each time."""
    assert hash_password("same", n=FAST_N) != hash_password("same", n=FAST_N)


def test_production_cost_hash_verifies() -> None:
    """A hash at the default scrypt cost verifies (and records that cost)."""
    encoded = hash_password("pw-at-full-cost")
    assert encoded.split("$")[1] == str(2**14)
    assert verify_password("pw-at-full-cost", encoded)


@pytest.mark.parametrize(
    "encoded", ["", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16$8$1$!!$AAAA"]
)
def test_malformed_hash_never_verifies(encoded: str) -> None:
    """A malformed or foreign hash is a mismatch, not a crash."""
    assert not verify_password("anything", encoded)


def test_token_secret_has_256_bits_and_no_colon() -> None:
    """Secrets are 43 base64url characters (256 bits), unique, without ':'."""
    secrets_seen = {new_token_secret() for _ in range(50)}
    assert len(secrets_seen) == 50
    for secret in secrets_seen:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)


def test_token_digest_matches_only_its_secret() -> None:
    """The stored digest is sha256 hex; only the original secret matches it."""
    secret = new_token_secret()
    digest = digest_token_secret(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret not in digest
    assert token_secret_matches(secret, digest)
    assert not token_secret_matches(secret + "x", digest)


def test_new_id_shape() -> None:
    """Ids look like Rancher's: prefix, dash, five consonants/digits."""
    assert re.fullmatch(r"token-[bcdfghjklmnpqrstvwxz2456789]{5}", new_id("token"))
    assert len(new_password()) == 20


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("token-abcde:secret", ("token-abcde", "secret")),
        ("token-abcde:sec:ret", ("token-abcde", "sec:ret")),
        ("token-abcde", None),
        ("token-abcde:", None),
        ("user-abcde:secret", None),
        ("token-a/b:secret", None),
        ("", None),
    ],
)
def test_split_token(value: str, expected: tuple[str, str] | None) -> None:
    """Only `token-xxxxx:<secret>` is a token value."""
    assert split_token(value) == expected


def test_token_expiry() -> None:
    """A token with expiresAtMs in the past is expired; 0 means never."""
    assert token_expired({"expiresAtMs": 1000}, 1000)
    assert not token_expired({"expiresAtMs": 1001}, 1000)
    assert not token_expired({"expiresAtMs": 0}, 10**15)
    assert not token_expired({}, 10**15)


def _basic(text: str) -> bytes:
    return b"Basic " + base64.b64encode(text.encode())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer token-a:s1")], "token-a:s1"),
        ([(b"authorization", b"bearer   token-a:s1  ")], "token-a:s1"),
        ([(b"authorization", _basic("token-a:s1"))], "token-a:s1"),
        ([(b"authorization", b"Basic !!!")], ""),
        ([(b"authorization", b"Digest x")], ""),
        ([(b"cookie", b"a=1; R_SESS=token-a:s1; b=2")], "token-a:s1"),
        ([(b"cookie", b"a=1"), (b"cookie", b"R_SESS=token-b:s2")], "token-b:s2"),
        # the Authorization header wins over the cookie
        ([(b"cookie", b"R_SESS=token-c:s3"), (b"authorization", b"Bearer token-a:s1")],
         "token-a:s1"),
        ([(b"cookie", b"other=1")], None),
        ([(b"host", b"h")], None),
        ([], None),
    ],
)
def test_token_from_headers(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    """Bearer, Basic (Rancher's `token-x:secret` form) and the R_SESS cookie are read;
    None means no credentials, "" means malformed ones."""
    assert token_from_headers(headers) == expected
