"""Tokens: issuing, checking and revoking them, and who is calling (Principal). Stored shape
(JSON under /corral/…):

- `tokens/<id>`: userId, description, secretDigest (sha256 hex), ttl (ms), expiresAtMs
  (0 = never), kind ("session" from a login, "apikey" from POST /v3/tokens), created

The full value a client presents is `token-xxxxx:<secret>`; the secret is never stored.

With a LoginCache (`corral.server.domain.login_cache`), `authenticate` and `still_valid` answer
from it while it is current and holds the token and its user, and read the store otherwise;
this server's own token writes go into it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.server.domain.clock import iso_time, now_ms
from corral.server.domain.credentials import (
    digest_token_secret,
    new_id,
    new_token_secret,
    token_secret_matches,
)
from corral.server.domain.login_cache import CachedToken, LoginCache
from corral.server.domain.records import TOKENS, USERS, Record, Records
from corral.store.base import CompareFailed, Store

AUTHENTICATED_GROUPS = ("system:authenticated", "system:cattle:authenticated")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: the user and the token they presented."""

    user_id: str
    username: str
    admin: bool
    token_id: str

    def audit_user(self) -> dict[str, Any]:
        """The `user` object of an audit record."""
        return {"name": self.username, "group": list(AUTHENTICATED_GROUPS)}


def token_expired(token: dict[str, Any], at_ms: int) -> bool:
    """True when the token has an expiry and it has passed."""
    expires = int(token.get("expiresAtMs") or 0)
    return expires > 0 and at_ms >= expires


def split_token(value: str) -> tuple[str, str] | None:
    """(`token-xxxxx`, secret) of `token-xxxxx:secret`, or None when malformed."""
    token_id, sep, secret = value.strip().partition(":")
    if not sep or not token_id.startswith("token-") or not secret or "/" in token_id:
        return None
    return token_id, secret


def principal_for(user: Record, token_id: str) -> Principal:
    """The principal of `user` calling with the token `token_id`."""
    return Principal(
        user_id=user.id,
        username=str(user.data.get("username", "")),
        admin=bool(user.data.get("admin", False)),
        token_id=token_id,
    )


class Tokens:
    """Tokens of one store (the users they belong to are read from the same store, or from the
    login cache when one is given and current)."""

    def __init__(self, store: Store, cache: LoginCache | None = None) -> None:
        self.store = store
        self.cache = cache
        self.records = Records(store, TOKENS, "token")
        self.users = Records(store, USERS, "user")

    def _cached_token(self, token_id: str) -> CachedToken | None:
        """The token from the login cache when it may be used and holds it, else None."""
        if self.cache is None or not self.cache.current:
            return None
        return self.cache.token(token_id)

    async def get(self, token_id: str) -> Record | None:
        """The token, or None."""
        return await self.records.get(token_id)

    async def list(self) -> tuple[list[Record], int]:
        """Every token in id order, and the store revision of the read."""
        return await self.records.list()

    async def issue(
        self, user_id: str, *, ttl_ms: int, description: str, kind: str
    ) -> tuple[Record, str]:
        """A new token for the user: (its record, the full `token-xxxxx:<secret>` value,
        which is never stored and cannot be shown again)."""
        secret = new_token_secret()
        created = now_ms()
        data = {
            "userId": user_id,
            "description": description,
            "secretDigest": digest_token_secret(secret),
            "ttl": ttl_ms,
            "expiresAtMs": created + ttl_ms if ttl_ms > 0 else 0,
            "kind": kind,
            "created": iso_time(created),
        }
        record = await self.records.create_with_new_id(lambda: new_id("token"), data)
        if self.cache is not None:
            self.cache.learn_token(record.id, data, record.mod_revision)
        return record, f"{record.id}:{secret}"

    async def authenticate(self, token_value: str) -> Principal | str:
        """The principal of a `token-xxxxx:secret` value, or the reason it is refused."""
        parts = split_token(token_value)
        if parts is None:
            return "malformed token (expected token-xxxxx:secret)"
        token_id, secret = parts
        answer = self._authenticate_cached(token_id, secret)
        if answer is not None:
            return answer
        token = await self.records.get(token_id)
        if token is None or not token_secret_matches(secret, str(token.data.get("secretDigest"))):
            return "invalid or deleted token"
        if token_expired(token.data, now_ms()):
            return "token expired"
        user = await self.users.get(str(token.data.get("userId", "")))
        if user is None or not user.data.get("enabled", True):
            return "the token's user no longer exists or is disabled"
        return principal_for(user, token_id)

    def _authenticate_cached(self, token_id: str, secret: str) -> Principal | str | None:
        """`authenticate` from the login cache; None when the store must be asked (no cache,
        not current, or it does not hold the token or its user)."""
        token = self._cached_token(token_id)
        user = self.cache.user(token.user_id) if self.cache and token else None
        if token is None or user is None:
            return None
        if not token.matches(secret):
            return "invalid or deleted token"
        if token.expired(now_ms()):
            return "token expired"
        if not user.enabled:
            return "the token's user no longer exists or is disabled"
        return Principal(token.user_id, user.username, user.admin, token_id)

    async def revoke(self, token_id: str) -> bool:
        """Delete a token (logout); False when it was already gone."""
        if not token_id or "/" in token_id:
            return False
        revision = await self.store.delete(self.records.key(token_id))
        self._forget(token_id, revision)
        return revision is not None

    async def delete(self, token: Record) -> bool:
        """Delete `token` if unchanged since read (ChangedConcurrently otherwise); False when
        it was already gone."""
        try:
            revision = await self.store.delete(
                self.records.key(token.id), expected_mod_revision=token.mod_revision
            )
        except CompareFailed:
            raise self.records.changed_error(token.id) from None
        self._forget(token.id, revision)
        return revision is not None

    def _forget(self, token_id: str, revision: int | None) -> None:
        if self.cache is not None and revision is not None:
            self.cache.forget_token(token_id, revision)

    async def still_valid(self, principal: Principal) -> bool:
        """True while the principal's token exists, is unexpired and its user is enabled
        (long-lived connections re-check this)."""
        cached = self._cached_token(principal.token_id)
        owner = self.cache.user(principal.user_id) if self.cache and cached else None
        if cached is not None and owner is not None:
            return not cached.expired(now_ms()) and owner.enabled
        token = await self.records.get(principal.token_id)
        if token is None or token_expired(token.data, now_ms()):
            return False
        user = await self.users.get(principal.user_id)
        return user is not None and bool(user.data.get("enabled", True))
