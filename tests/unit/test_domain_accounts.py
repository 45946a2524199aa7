"""Users, the username index and tokens in the store (MemoryStore): one transaction per
multi-key write, dangling claims treated as free, password checks, issuing, authenticating,
expiring and revoking tokens, and the bootstrap admin created exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from corral.server.auth import BOOTSTRAP_PASSWORD_ENV, bootstrap_admin
from corral.server.context import ServerContext
from corral.server.domain.errors import AlreadyExists, ChangedConcurrently
from corral.server.domain.records import MAX_TXN_OPS, Record, Records
from corral.server.domain.tokens import Principal, Tokens
from corral.server.domain.users import Users
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


async def mod_revision(store: Store, key: str) -> int:
    """The mod revision of `key` (which must exist)."""
    kv = await store.get(key)
    assert kv is not None, key
    return kv.mod_revision


def test_user_and_claim_are_written_at_one_revision() -> None:
    """Creating a user writes users/<id> and usernames/<name> in one transaction."""

    async def body(store: Store) -> None:
        before = await store.revision()
        user = await Users(store).create(username="ann", password="password-0001")
        assert await store.revision() == before + 1
        assert user.mod_revision == before + 1
        assert await mod_revision(store, f"/corral/users/{user.id}") == before + 1
        claim = await store.get("/corral/usernames/ann")
        assert claim is not None and json.loads(claim.value) == {"userId": user.id}

    run(body)


def test_username_is_unique() -> None:
    """A second user with the same username is AlreadyExists, and nothing is written."""

    async def body(store: Store) -> None:
        users = Users(store)
        await users.create(username="ann", password="password-0001")
        before = await store.revision()
        with pytest.raises(AlreadyExists, match="ann"):
            await users.create(username="ann", password="password-0002")
        assert await store.revision() == before
        assert len((await users.list())[0]) == 1

    run(body)


def test_concurrent_creates_of_one_username_let_exactly_one_win() -> None:
    """Two creates racing for a username: one user exists afterwards, the other call fails."""

    async def body(store: Store) -> None:
        users = Users(store)
        results = await asyncio.gather(
            *(users.create(username="race", password=f"password-000{n}") for n in range(2)),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "Record"]
        listed, _ = await users.list()
        assert [u.data["username"] for u in listed] == ["race"]

    run(body)


@pytest.mark.parametrize("holder", [None, {"username": "someone-else"}])
def test_dangling_claim_is_free(holder: dict[str, str] | None) -> None:
    """A claim whose user is gone (or now has another username), as an older version could
    leave, does not block the username: it is taken over in the create's transaction."""

    async def body(store: Store) -> None:
        await store.create("/corral/usernames/bob", json.dumps({"userId": "u-old"}).encode())
        if holder is not None:
            await store.create("/corral/users/u-old", json.dumps(holder).encode())
        users = Users(store)
        assert await users.by_username("bob") is None
        user = await users.create(username="bob", password="password-0001")
        found = await users.by_username("bob")
        assert found is not None and found.id == user.id
        assert await mod_revision(store, "/corral/usernames/bob") == user.mod_revision

    run(body)


def test_password_is_stored_hashed_and_checked() -> None:
    """The stored user holds a scrypt hash, never the password; checks pass only for it."""

    async def body(store: Store) -> None:
        users = Users(store)
        user = await users.create(username="cy", password="password-0001")
        raw = await store.get(f"/corral/users/{user.id}")
        assert raw is not None and b"password-0001" not in raw.value
        assert b"scrypt$" in raw.value
        assert await users.check_password("cy", "password-0001") is not None
        assert await users.check_password("cy", "password-0002") is None
        assert await users.check_password("nobody", "password-0001") is None
        changed = await users.set_password(user.id, "password-0003", must_change=True)
        assert changed.data["mustChangePassword"] is True
        assert await users.check_password("cy", "password-0003") is not None

    run(body)


def test_disabled_user_cannot_log_in_or_use_tokens() -> None:
    """Disabling a user refuses its password and its existing tokens."""

    async def body(store: Store) -> None:
        users, tokens = Users(store), Tokens(store)
        user = await users.create(username="di", password="password-0001")
        _, token = await tokens.issue(user.id, ttl_ms=0, description="", kind="apikey")
        assert isinstance(await tokens.authenticate(token), Principal)

        def disable(data: dict[str, object]) -> dict[str, object]:
            data["enabled"] = False
            return data

        await users.update(user.id, disable)
        assert await users.check_password("di", "password-0001") is None
        assert "disabled" in str(await tokens.authenticate(token))

    run(body)


def test_token_is_stored_as_digest_and_authenticates() -> None:
    """Only the sha256 digest is stored; the full value authenticates; a wrong secret fails."""

    async def body(store: Store) -> None:
        users, tokens = Users(store), Tokens(store)
        user = await users.create(username="ed", password="password-0001", admin=True)
        record, token = await tokens.issue(user.id, ttl_ms=60_000, description="cli",
                                           kind="session")
        secret = token.split(":", 1)[1]
        raw = await store.get(f"/corral/tokens/{record.id}")
        assert raw is not None and secret.encode() not in raw.value
        principal = await tokens.authenticate(token)
        assert principal == Principal(user.id, "ed", True, record.id)
        assert await tokens.authenticate(f"{record.id}:wrong") == "invalid or deleted token"
        assert "malformed" in str(await tokens.authenticate("garbage"))

    run(body)


def test_expired_and_revoked_tokens_are_refused() -> None:
    """A token past its expiry, or deleted, no longer authenticates or stays valid."""

    async def body(store: Store) -> None:
        users, tokens = Users(store), Tokens(store)
        user = await users.create(username="fi", password="password-0001")
        record, token = await tokens.issue(user.id, ttl_ms=1, description="", kind="x")

        def expire(data: dict[str, object]) -> dict[str, object]:
            data["expiresAtMs"] = 1  # long ago
            return data

        await tokens.records.update(record.id, expire)
        assert await tokens.authenticate(token) == "token expired"
        _, other = await tokens.issue(user.id, ttl_ms=0, description="", kind="x")
        principal = await tokens.authenticate(other)
        assert isinstance(principal, Principal)
        assert await tokens.still_valid(principal)
        assert await tokens.revoke(principal.token_id)
        assert not await tokens.still_valid(principal)
        assert await tokens.authenticate(other) == "invalid or deleted token"

    run(body)


def test_delete_user_removes_it_its_claim_and_tokens_at_one_revision() -> None:
    """Deleting a user deletes it, its tokens and its claim in one transaction; others'
    tokens stay and the username is free again."""

    async def body(store: Store) -> None:
        users, tokens = Users(store), Tokens(store)
        gone = await users.create(username="gus", password="password-0001")
        kept = await users.create(username="hal", password="password-0001")
        for _ in range(2):
            await tokens.issue(gone.id, ttl_ms=0, description="", kind="x")
        _, kept_token = await tokens.issue(kept.id, ttl_ms=0, description="", kind="x")
        before = await store.revision()
        await users.delete(gone)
        assert await store.revision() == before + 1
        listed, _ = await tokens.list()
        assert [t.data["userId"] for t in listed] == [kept.id]
        assert await store.get("/corral/usernames/gus") is None
        assert isinstance(await tokens.authenticate(kept_token), Principal)
        await users.create(username="gus", password="password-0001")

    run(body)


def test_delete_of_a_changed_user_is_refused_and_writes_nothing() -> None:
    """A delete that compares on a stale read is ChangedConcurrently; user, claim and tokens
    all stay."""

    async def body(store: Store) -> None:
        users, tokens = Users(store), Tokens(store)
        stale = await users.create(username="ivy", password="password-0001")
        await tokens.issue(stale.id, ttl_ms=0, description="", kind="x")

        def rename(data: dict[str, object]) -> dict[str, object]:
            data["name"] = "Ivy"
            return data

        await users.update(stale.id, rename)
        with pytest.raises(ChangedConcurrently, match="read it again"):
            await users.delete(stale)
        assert await users.by_username("ivy") is not None
        assert len((await tokens.list())[0]) == 1

    run(body)


def test_delete_user_with_more_tokens_than_one_transaction_holds() -> None:
    """Every token goes, even beyond etcd's default limit of operations per transaction."""

    async def body(store: Store) -> None:
        users, tokens = Users(store), Tokens(store)
        user = await users.create(username="jo", password="password-0001")
        for _ in range(MAX_TXN_OPS + 5):
            await tokens.issue(user.id, ttl_ms=0, description="", kind="session")
        await users.delete(user)
        assert (await tokens.list())[0] == []
        assert await users.by_username("jo") is None

    run(body)


def test_records_replace_loses_the_race() -> None:
    """Two writers that read the same revision: the second write is ChangedConcurrently;
    creating an existing id is AlreadyExists."""

    async def body(store: Store) -> None:
        records = Records(store, "things", "thing")
        first = await records.create("t-1", {"n": 1})
        await records.replace(first, {"n": 2})
        with pytest.raises(ChangedConcurrently, match="changed by another request"):
            await records.replace(first, {"n": 3})
        with pytest.raises(ChangedConcurrently):
            await records.delete(first)
        current = await records.get("t-1")
        assert current is not None and current.data == {"n": 2}
        with pytest.raises(AlreadyExists, match="thing 't-1' already exists"):
            await records.create("t-1", {})

    run(body)


def test_create_with_new_id_retries_collisions() -> None:
    """A colliding random id is retried with the next one."""

    async def body(store: Store) -> Record:
        records = Records(store, "things", "thing")
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
        return first, second, await ctx.users.check_password("admin", "from-the-env-123")

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
        ctx = ServerContext(store=store, data_dir=tmp_path)
        password = await bootstrap_admin(ctx)
        assert password is not None
        return password, await ctx.users.check_password("admin", password)

    password, admin = run(body)
    assert password and len(password) >= 16
    assert admin is not None and admin.data["mustChangePassword"] is True


def test_servers_starting_together_bootstrap_one_admin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Three servers on one store bootstrap at once: one admin, one password returned, and
    it is the password that logs in."""
    monkeypatch.delenv(BOOTSTRAP_PASSWORD_ENV, raising=False)

    async def body(store: Store) -> None:
        servers = [ServerContext(store=store, data_dir=tmp_path) for _ in range(3)]
        passwords = await asyncio.gather(*(bootstrap_admin(ctx) for ctx in servers))
        won = [p for p in passwords if p is not None]
        assert len(won) == 1
        users, _ = await servers[0].users.list()
        assert [u.data["username"] for u in users] == ["admin"]
        assert await servers[1].users.check_password("admin", won[0]) is not None

    run(body)


def test_deleted_admin_is_not_bootstrapped_again(tmp_path: Path) -> None:
    """The bootstrap marker outlives the admin: a later start does not recreate it."""

    async def body(store: Store) -> None:
        ctx = ServerContext(store=store, data_dir=tmp_path)
        assert await bootstrap_admin(ctx) is not None
        admin = await ctx.users.by_username("admin")
        assert admin is not None
        await ctx.users.delete(admin)
        assert await bootstrap_admin(ctx) is None
        assert await ctx.users.by_username("admin") is None

    run(body)


def test_admin_from_before_the_marker_counts_as_bootstrapped(tmp_path: Path) -> None:
    """Data with an admin but no marker (an older version) gets no second admin and gains
    the marker."""

    async def body(store: Store) -> None:
        ctx = ServerContext(store=store, data_dir=tmp_path)
        await ctx.users.create(username="admin", password="password-0001", admin=True)
        assert await bootstrap_admin(ctx) is None
        assert await store.get("/corral/bootstrap/admin") is not None
        assert await ctx.users.check_password("admin", "password-0001") is not None

    run(body)
