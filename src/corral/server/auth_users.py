"""Users and tokens in the store: who is calling (Principal), username lookup, issuing and
checking tokens. Stored shapes (JSON under /corral/…):

- `users/<id>`: username, name, description, passwordHash, mustChangePassword, enabled, admin,
  created (ISO time)
- `usernames/<username>`: {"userId": …} — the uniqueness claim and login index
- `tokens/<id>`: userId, description, secretDigest (sha256 hex), ttl (ms), expiresAtMs
  (0 = never), kind ("session" from a login, "apikey" from POST /v3/tokens), created
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from corral.server.api.errors import Conflict
from corral.server.api.records import Record, Records
from corral.server.auth_secrets import (
    burn_password_check,
    digest_token_secret,
    hash_password,
    new_id,
    new_token_secret,
    token_secret_matches,
    verify_password,
)
from corral.store.base import Store

USERS = "users"
TOKENS = "tokens"
USERNAMES = "usernames"
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


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return int(time.time() * 1000)


def iso_time(ms: int) -> str:
    """RFC 3339 UTC time (`2024-05-01T12:00:00Z`) of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class Accounts:
    """Users, the username index and tokens of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.users = Records(store, USERS)
        self.tokens = Records(store, TOKENS)
        self.usernames = Records(store, USERNAMES)

    # -- users ---------------------------------------------------------------------------

    async def user_by_username(self, username: str) -> Record | None:
        """The user called `username`, or None."""
        claim = await self.usernames.get(username)
        if claim is None:
            return None
        user = await self.users.get(str(claim.data.get("userId", "")))
        if user is None or user.data.get("username") != username:
            return None
        return user

    async def create_user(
        self,
        *,
        username: str,
        password: str,
        name: str = "",
        description: str = "",
        admin: bool = False,
        must_change_password: bool = False,
        enabled: bool = True,
    ) -> Record:
        """Claim the username, then write the user; Conflict when the username is taken."""
        user_id = await self._claim_username(username)
        password_hash = await asyncio.to_thread(hash_password, password)
        data = {
            "username": username,
            "name": name,
            "description": description,
            "passwordHash": password_hash,
            "mustChangePassword": must_change_password,
            "enabled": enabled,
            "admin": admin,
            "created": iso_time(now_ms()),
        }
        try:
            return await self.users.create(user_id, data)
        except Conflict:
            await self.usernames.delete_id(username)
            raise

    async def _claim_username(self, username: str) -> str:
        """Write the `usernames/<username>` claim for a fresh user id and return that id.
        A claim whose user is gone (a crash between the two writes) is taken over."""
        user_id = new_id("u")
        claim = await self.usernames.get(username)
        if claim is not None:
            if await self.users.get(str(claim.data.get("userId", ""))) is not None:
                raise Conflict(f"username {username!r} is already taken")
            await self.usernames.replace(claim, {"userId": user_id})
            return user_id
        try:
            await self.usernames.create(username, {"userId": user_id})
        except Conflict:
            raise Conflict(f"username {username!r} is already taken") from None
        return user_id

    async def delete_user(self, user: Record) -> None:
        """Delete the user, its username claim and every token it owns."""
        await self.users.delete(user)
        await self.usernames.delete_id(str(user.data.get("username", "")))
        tokens, _ = await self.tokens.list()
        for token in tokens:
            if token.data.get("userId") == user.id:
                await self.tokens.delete_id(token.id)

    async def check_password(self, username: str, password: str) -> Record | None:
        """The enabled user whose password this is, or None (same cost either way)."""
        user = await self.user_by_username(username)
        if user is None:
            await asyncio.to_thread(burn_password_check, password)
            return None
        ok = await asyncio.to_thread(
            verify_password, password, str(user.data.get("passwordHash", ""))
        )
        if not ok or not user.data.get("enabled", True):
            return None
        return user

    async def set_password(self, user_id: str, password: str, *, must_change: bool) -> Record:
        """Replace the password hash (compare on revision); NotFound handled by the caller."""
        password_hash = await asyncio.to_thread(hash_password, password)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            data["passwordHash"] = password_hash
            data["mustChangePassword"] = must_change
            return data

        record = await self.users.update(user_id, change)
        if record is None:
            raise LookupError(user_id)
        return record

    # -- tokens --------------------------------------------------------------------------

    async def issue_token(
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
        record = await self.tokens.create_with_new_id(lambda: new_id("token"), data)
        return record, f"{record.id}:{secret}"

    async def authenticate(self, token_value: str) -> Principal | str:
        """The principal of a `token-xxxxx:secret` value, or the reason it is refused."""
        parts = split_token(token_value)
        if parts is None:
            return "malformed token (expected token-xxxxx:secret)"
        token_id, secret = parts
        token = await self.tokens.get(token_id)
        if token is None or not token_secret_matches(secret, str(token.data.get("secretDigest"))):
            return "invalid or deleted token"
        if token_expired(token.data, now_ms()):
            return "token expired"
        user = await self.users.get(str(token.data.get("userId", "")))
        if user is None or not user.data.get("enabled", True):
            return "the token's user no longer exists or is disabled"
        return Principal(
            user_id=user.id,
            username=str(user.data.get("username", "")),
            admin=bool(user.data.get("admin", False)),
            token_id=token_id,
        )

    async def revoke_token(self, token_id: str) -> bool:
        """Delete a token (logout); False when it was already gone."""
        return await self.tokens.delete_id(token_id)

    async def still_valid(self, principal: Principal) -> bool:
        """True while the principal's token exists, is unexpired and its user is enabled
        (long-lived connections re-check this)."""
        token = await self.tokens.get(principal.token_id)
        if token is None or token_expired(token.data, now_ms()):
            return False
        user = await self.users.get(principal.user_id)
        return user is not None and bool(user.data.get("enabled", True))
