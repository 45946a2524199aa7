"""Users and tokens in the store (MemoryStore): username claims, password checks, issuing,
authenticating, expiring and revoking tokens, bootstrap of the admin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from corral.server.api.errors import Conflict
from corral.server.api.records import Record, Records
from corral.server.auth import BOOTSTRAP_PASSWORD_ENV, bootstrap_admin
from corral.server.auth_users import Accounts, Principal
from corral.server.context import ServerContext
from corral.store import open_store
from corral.store.base import Store

T = TypeVar("T")


def run(body: Callable[[Store], Awaitable[T]]) -> T:
    """Run `body` against a fresh MemoryStore."""

    async def main() -> T:
        store = open_store("memory://")
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_username_is_unique() -> None:
    """A second user with the same username is a Conflict."""

    async def body(store: Store) -> None:
        accounts = Accounts(store)
        await accounts.create_user(username="ann", password="password-0001")
        with pytest.raises(Conflict, match="ann"):
            await accounts.create_user(username="ann", password="password-0002")

    run(body)


def test_orphaned_username_claim_is_taken_over() -> None:
    """A claim left by a crash between the two writes does not block the username forever."""

    async def body(store: Store) -> str:
        await store.create("/corral/usernames/bob", json.dumps({"userId": "u-gone"}).encode())
        accounts = Accounts(store)
        user = await accounts.create_user(username="bob", password="password-0001")
        found = await accounts.user_by_username("bob")
        assert found is not None and found.id == user.id
        return user.id

    assert run(body).startswith("u-")


def test_password_is_stored_hashed_and_checked() -> None:
    """The stored user holds a scrypt hash, never the password; checks pass only for it."""

    async def body(store: Store) -> None:
        accounts = Accounts(store)
        user = await accounts.create_user(username="cy", password="password-0001")
        raw = await store.get(f"/corral/users/{user.id}")
        assert raw is not None and b"password-0001" not in raw.value
        assert b"scrypt$" in raw.value
        assert await accounts.check_password("cy", "password-0001") is not None
        assert await accounts.check_password("cy", "password-0002") is None
        assert await accounts.check_password("nobody", "password-0001") is None

    run(body)


def test_disabled_user_cannot_log_in_or_use_tokens() -> None:
    """Disabling a user refuses its password and its existing tokens."""

    async def body(store: Store) -> None:
        accounts = Accounts(store)
        user = await accounts.create_user(username="di", password="password-0001")
        _, token = await accounts.issue_token(user.id, ttl_ms=0, description="", kind="apikey")
        assert isinstance(await accounts.authenticate(token), Principal)

        def disable(data: dict[str, object]) -> dict[str, object]:
            data["enabled"] = False
            return data

        await accounts.users.update(user.id, disable)
        assert await accounts.check_password("di", "password-0001") is None
        assert "disabled" in str(await accounts.authenticate(token))

    run(body)


def test_token_is_stored_as_digest_and_authenticates() -> None:
    """Only the sha256 digest is stored; the full value authenticates; a wrong secret fails."""

    async def body(store: Store) -> None:
        accounts = Accounts(store)
        user = await accounts.create_user(username="ed", password="password-0001", admin=True)
        record, token = await accounts.issue_token(
            user.id, ttl_ms=60_000, description="cli", kind="session"
        )
        secret = token.split(":", 1)[1]
        raw = await store.get(f"/corral/tokens/{record.id}")
        assert raw is not None and secret.encode() not in raw.value
        principal = await accounts.authenticate(token)
        assert principal == Principal(user.id, "ed", True, record.id)
        assert await accounts.authenticate(f"{record.id}:wrong") == "invalid or deleted token"
        assert "malformed" in str(await accounts.authenticate("garbage"))

    run(body)


def test_expired_and_revoked_tokens_are_refused() -> None:
    """A token past its expiry, or deleted, no longer authenticates or stays valid."""

    async def body(store: Store) -> None:
        accounts = Accounts(store)
        user = await accounts.create_user(username="fi", password="password-0001")
        record, token = await accounts.issue_token(user.id, ttl_ms=1, description="", kind="x")

        def expire(data: dict[str, object]) -> dict[str, object]:
            data["expiresAtMs"] = 1  # long ago
            return data

        await accounts.tokens.update(record.id, expire)
        assert await accounts.authenticate(token) == "token expired"
        _, other = await accounts.issue_token(user.id, ttl_ms=0, description="", kind="x")
        principal = await accounts.authenticate(other)
        assert isinstance(principal, Principal)
        assert await accounts.still_valid(principal)
        assert await accounts.revoke_token(principal.token_id)
        assert not await accounts.still_valid(principal)
        assert await accounts.authenticate(other) == "invalid or deleted token"

    run(body)


def test_delete_user_removes_its_tokens_and_claim() -> None:
    """Deleting a user deletes its tokens and frees the username; others' tokens stay."""

    async def body(store: Store) -> None:
        accounts = Accounts(store)
        gone = await accounts.create_user(username="gus", password="password-0001")
        kept = await accounts.create_user(username="hal", password="password-0001")
        await accounts.issue_token(gone.id, ttl_ms=0, description="", kind="x")
        _, kept_token = await accounts.issue_token(kept.id, ttl_ms=0, description="", kind="x")
        await accounts.delete_user(gone)
        tokens, _ = await accounts.tokens.list()
        assert [t.data["userId"] for t in tokens] == [kept.id]
        assert await accounts.user_by_username("gus") is None
        assert isinstance(await accounts.authenticate(kept_token), Principal)
        await accounts.create_user(username="gus", password="password-0001")

    run(body)


def test_records_replace_loses_the_race_with_conflict() -> None:
    """Two writers that read the same revision: the second write is a Conflict."""

    async def body(store: Store) -> None:
        records = Records(store, "things")
        first = await records.create("t-1", {"n": 1})
        await records.replace(first, {"n": 2})
        with pytest.raises(Conflict, match="changed by another request"):
            await records.replace(first, {"n": 3})
        with pytest.raises(Conflict):
            await records.delete(first)
        current = await records.get("t-1")
        assert current is not None and current.data == {"n": 2}
        with pytest.raises(Conflict, match="already exists"):
            await records.create("t-1", {})

    run(body)


def test_create_with_new_id_retries_collisions() -> None:
    """A colliding random id is retried with the next one."""

    async def body(store: Store) -> Record:
        records = Records(store, "things")
        await records.create("t-a", {})
        ids = iter(["t-a", "t-a", "t-b"])
        return await records.create_with_new_id(lambda: next(ids), {"x": 1})

    assert run(body).id == "t-b"


def test_bootstrap_admin_from_env_then_never_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """First start creates admin with the env password (no forced change); later starts
    return None."""
    monkeypatch.setenv(BOOTSTRAP_PASSWORD_ENV, "from-the-env-123")

    async def body(store: Store) -> tuple[str | None, str | None, Record | None]:
        ctx = ServerContext(store=store, data_dir=tmp_path)
        first = await bootstrap_admin(ctx)
        second = await bootstrap_admin(ctx)
        return first, second, await Accounts(store).check_password("admin", "from-the-env-123")

    first, second, admin = run(body)
    assert first == "from-the-env-123"
    assert second is None
    assert admin is not None
    assert admin.data["admin"] is True and admin.data["mustChangePassword"] is False


def test_bootstrap_admin_generates_a_password_to_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the env variable, a random password is returned and must be changed."""
    monkeypatch.delenv(BOOTSTRAP_PASSWORD_ENV, raising=False)

    async def body(store: Store) -> tuple[str | None, Record | None]:
        password = await bootstrap_admin(ServerContext(store=store, data_dir=tmp_path))
        assert password is not None
        return password, await Accounts(store).check_password("admin", password)

    password, admin = run(body)
    assert password and len(password) >= 16
    assert admin is not None and admin.data["mustChangePassword"] is True
