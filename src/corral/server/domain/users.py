"""Users and the username index. Stored shapes (JSON under /corral/…):

- `users/<id>`: username, name, description, passwordHash, mustChangePassword, enabled, admin,
  created (ISO time)
- `usernames/<username>`: {"userId": …}, the uniqueness claim and login index
- `bootstrap/admin`: {"userId": …, "created": …}, written with the first admin, so several
  servers starting at once create it exactly once

A user and its claim are written by one transaction that compares the claim absent; deleting a
user deletes it, its claim and its tokens in one transaction that compares the user's revision.
A claim whose user is gone or has another username (left by an older version that wrote the two
keys one after the other) is treated as free and taken over in the same way.

With a LoginCache, this server's writes of users (and the tokens a user's deletion removes) go
into it at once, so a disabled or deleted user is refused on the next request. Login
(`check_password`) always reads the store: the cache holds no password hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from corral.server.domain.clock import iso_time, now_ms
from corral.server.domain.credentials import (
    burn_password_check,
    hash_password,
    new_id,
    verify_password,
)
from corral.server.domain.errors import AlreadyExists, ChangedConcurrently
from corral.server.domain.login_cache import LoginCache
from corral.server.domain.records import (
    BOOTSTRAP,
    CREATE_ATTEMPTS,
    MAX_TXN_OPS,
    TOKENS,
    USERNAMES,
    USERS,
    Change,
    Record,
    Records,
    chunks,
)
from corral.store.base import Compare, CompareFailed, Delete, Op, Store

log = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
ADMIN_MARKER = "admin"  # the id of the bootstrap marker under BOOTSTRAP


class Users:
    """Users of one store, with the username index."""

    def __init__(self, store: Store, cache: LoginCache | None = None) -> None:
        self.store = store
        self.cache = cache
        self.records = Records(store, USERS, "user")
        self.usernames = Records(store, USERNAMES, "username")
        self.tokens = Records(store, TOKENS, "token")
        self.bootstrap = Records(store, BOOTSTRAP, "bootstrap marker")

    # -- reads -----------------------------------------------------------------------------

    async def get(self, user_id: str) -> Record | None:
        """The user, or None."""
        return await self.records.get(user_id)

    async def require(self, user_id: str) -> Record:
        """The user, or NotFound."""
        return await self.records.require(user_id)

    async def list(self) -> tuple[list[Record], int]:
        """Every user in id order, and the store revision of the read."""
        return await self.records.list()

    async def by_username(self, username: str) -> Record | None:
        """The user called `username`, or None."""
        claim = await self.usernames.get(username)
        return None if claim is None else await self._holder(claim)

    async def _holder(self, claim: Record) -> Record | None:
        """The live user a username claim points at (None for a dangling claim)."""
        user = await self.records.get(str(claim.data.get("userId", "")))
        if user is None or user.data.get("username") != claim.id:
            return None
        return user

    # -- passwords -------------------------------------------------------------------------

    async def check_password(self, username: str, password: str) -> Record | None:
        """The enabled user whose password this is, or None (same cost either way)."""
        user = await self.by_username(username)
        if user is None:
            await asyncio.to_thread(burn_password_check, password)
            return None
        if not await self.password_matches(user, password) or not user.data.get("enabled", True):
            return None
        return user

    async def password_matches(self, user: Record, password: str) -> bool:
        """True when `password` is the user's (checked off the event loop)."""
        stored = str(user.data.get("passwordHash", ""))
        return await asyncio.to_thread(verify_password, password, stored)

    async def set_password(self, user_id: str, password: str, *, must_change: bool) -> Record:
        """Replace the password hash (compare on revision); NotFound when the user is gone."""
        password_hash = await asyncio.to_thread(hash_password, password)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            data["passwordHash"] = password_hash
            data["mustChangePassword"] = must_change
            return data

        return self._learnt(await self.records.update(user_id, change))

    # -- writes ----------------------------------------------------------------------------

    async def create(
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
        """Write the user and its username claim in one transaction; AlreadyExists when the
        username is taken."""
        data = await self._new_user_data(
            username, password, name=name, description=description, admin=admin,
            must_change_password=must_change_password, enabled=enabled,
        )
        user = await self._create(data, marker=False)
        assert user is not None
        return user

    async def update(self, user_id: str, change: Change) -> Record:
        """Apply `change` to the user's stored fields (compare on revision). The username is
        not changed here: renaming is not supported."""
        return self._learnt(await self.records.update(user_id, change))

    async def delete(self, user: Record) -> None:
        """Delete the user, its username claim and every token it owns, in one transaction that
        compares the user's revision (ChangedConcurrently when it changed since read). Tokens
        beyond one transaction's limit follow in further transactions: they no longer
        authenticate once their user is gone."""
        username = str(user.data.get("username", ""))
        claim = await self.usernames.get(username) if username else None
        tokens, _ = await self.tokens.list()
        compares = [self.records.unchanged(user)]
        ops: list[Op] = [self.records.delete_op(user.id)]
        if claim is not None and claim.data.get("userId") == user.id:
            compares.append(self.usernames.unchanged(claim))
            ops.append(self.usernames.delete_op(username))
        ops += [self.tokens.delete_op(t.id) for t in tokens if t.data.get("userId") == user.id]
        try:
            revision = await self.store.txn(compares, ops[:MAX_TXN_OPS])
        except CompareFailed:
            raise self.records.changed_error(user.id) from None
        self._forget(ops[:MAX_TXN_OPS], revision)
        for rest in chunks(ops[MAX_TXN_OPS:]):
            self._forget(rest, await self.store.txn([], rest))

    async def bootstrap_admin(self, password: str, *, must_change_password: bool) -> Record | None:
        """Create the `admin` user with `password` unless an admin was ever bootstrapped: the
        user, its claim and the bootstrap marker go in one transaction that compares the marker
        absent, so of several servers starting together exactly one wins. The new user, or None
        when another server (or an earlier start) did it."""
        if await self.bootstrap.get(ADMIN_MARKER) is not None:
            return None
        if await self.by_username(ADMIN_USERNAME) is not None:
            await self._mark_bootstrapped()
            return None
        data = await self._new_user_data(
            ADMIN_USERNAME, password, name="Default Admin", admin=True,
            must_change_password=must_change_password,
        )
        user = await self._create(data, marker=True)
        if user is not None:
            log.info("created the bootstrap user %r", ADMIN_USERNAME)
        return user

    # -- internals -------------------------------------------------------------------------

    def _learnt(self, user: Record) -> Record:
        """`user`, written by this server, told to the login cache."""
        if self.cache is not None:
            self.cache.learn_user(user.id, user.data, user.mod_revision)
        return user

    def _forget(self, ops: Sequence[Op], revision: int) -> None:
        """Tell the login cache about users and tokens one transaction deleted."""
        if self.cache is None:
            return
        for op in ops:
            if isinstance(op, Delete) and op.key.startswith(self.records.prefix):
                self.cache.forget_user(op.key[len(self.records.prefix):], revision)
            elif isinstance(op, Delete) and op.key.startswith(self.tokens.prefix):
                self.cache.forget_token(op.key[len(self.tokens.prefix):], revision)

    async def _new_user_data(
        self, username: str, password: str, *, name: str = "", description: str = "",
        admin: bool = False, must_change_password: bool = False, enabled: bool = True,
    ) -> dict[str, Any]:
        password_hash = await asyncio.to_thread(hash_password, password)
        return {
            "username": username,
            "name": name,
            "description": description,
            "passwordHash": password_hash,
            "mustChangePassword": must_change_password,
            "enabled": enabled,
            "admin": admin,
            "created": iso_time(now_ms()),
        }

    async def _create(self, data: dict[str, Any], *, marker: bool) -> Record | None:
        """One transaction: user (fresh id, compared absent) + claim (compared absent, or at the
        revision of a dangling claim) [+ the bootstrap marker, compared absent]. A lost compare
        is read again: a taken username is AlreadyExists (None for the bootstrap when the marker
        appeared), a colliding id is retried."""
        username = str(data["username"])
        for _ in range(CREATE_ATTEMPTS):
            if marker and await self.bootstrap.get(ADMIN_MARKER) is not None:
                return None
            claim = await self.usernames.get(username)
            if claim is not None and await self._holder(claim) is not None:
                if marker:
                    return None
                raise AlreadyExists(f"username {username!r} is already taken")
            user_id = new_id("u")
            compares: list[Compare] = [
                self.records.absent(user_id),
                self.usernames.absent(username) if claim is None
                else self.usernames.unchanged(claim),
            ]
            ops: list[Op] = [
                self.records.put_op(user_id, data),
                self.usernames.put_op(username, {"userId": user_id}),
            ]
            if marker:
                compares.append(self.bootstrap.absent(ADMIN_MARKER))
                ops.append(self.bootstrap.put_op(ADMIN_MARKER, self._marker_data(user_id)))
            try:
                revision = await self.store.txn(compares, ops)
            except CompareFailed:
                continue
            return self._learnt(Record(id=user_id, data=data, mod_revision=revision))
        raise ChangedConcurrently(f"could not create user {username!r}; try again")

    def _marker_data(self, user_id: str) -> dict[str, Any]:
        return {"userId": user_id, "created": iso_time(now_ms())}

    async def _mark_bootstrapped(self) -> None:
        """Write the marker for an admin that an older version created without one."""
        with contextlib.suppress(AlreadyExists):  # another server wrote it first
            await self.bootstrap.create(ADMIN_MARKER, self._marker_data(""))
