"""Clusters and registration tokens (MemoryStore): a cluster and its default token are written
together, deleted together, and no token is added to a cluster that is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from corral.server.domain.clusters import DEFAULT_TOKEN_NAME, TOKEN_LENGTH, Clusters
from corral.server.domain.errors import ChangedConcurrently, Invalid, NotFound
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


def test_cluster_and_default_token_are_written_at_one_revision() -> None:
    """Creating a cluster writes it and `<id>:default-token` in one transaction."""

    async def body(store: Store) -> None:
        clusters = Clusters(store)
        before = await store.revision()
        cluster = await clusters.create({"name": "prod", "description": "", "labels": {}})
        assert await store.revision() == before + 1
        token = await clusters.require_token(f"{cluster.id}:{DEFAULT_TOKEN_NAME}")
        assert token.mod_revision == cluster.mod_revision
        assert token.data["clusterId"] == cluster.id
        assert len(token.data["token"]) == TOKEN_LENGTH

    run(body)


def test_delete_takes_the_cluster_and_its_tokens_at_one_revision() -> None:
    """Deleting a cluster deletes its tokens in the same transaction; others' stay."""

    async def body(store: Store) -> None:
        clusters = Clusters(store)
        gone = await clusters.create({"name": "a"})
        kept = await clusters.create({"name": "b"})
        await clusters.add_token(gone.id)
        before = await store.revision()
        await clusters.delete(gone)
        assert await store.revision() == before + 1
        tokens, _ = await clusters.list_tokens()
        assert [t.data["clusterId"] for t in tokens] == [kept.id]
        with pytest.raises(NotFound, match="cluster"):
            await clusters.require(gone.id)

    run(body)


def test_stale_delete_is_refused() -> None:
    """Deleting a cluster read before an update is ChangedConcurrently; nothing goes."""

    async def body(store: Store) -> None:
        clusters = Clusters(store)
        stale = await clusters.create({"name": "a"})

        def describe(data: dict[str, object]) -> dict[str, object]:
            data["description"] = "changed"
            return data

        await clusters.update(stale.id, describe)
        with pytest.raises(ChangedConcurrently):
            await clusters.delete(stale)
        assert len((await clusters.list_tokens())[0]) == 1

    run(body)


def test_no_token_for_a_missing_cluster() -> None:
    """A token for a cluster that does not exist is Invalid, naming the field; nothing is
    written."""

    async def body(store: Store) -> None:
        clusters = Clusters(store)
        before = await store.revision()
        with pytest.raises(Invalid, match="clusterId"):
            await clusters.add_token("c-none")
        assert await store.revision() == before

    run(body)
