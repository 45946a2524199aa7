"""Clusters and their registration tokens. Stored shapes (JSON under /corral/…):

- `clusters/<id>`: name, description, labels, created
- `clusterregistrationtokens/<cluster id>:<name>`: clusterId, token (54 characters), created

A cluster and its `default-token` are created by one transaction, and deleting a cluster
deletes its tokens in the same transaction; a new token compares its cluster unchanged, so no
token outlives its cluster.
"""

from __future__ import annotations

import secrets
from typing import Any

from corral.server.domain.clock import iso_time, now_ms
from corral.server.domain.credentials import new_id
from corral.server.domain.errors import ChangedConcurrently, Invalid
from corral.server.domain.records import (
    CLUSTERS,
    CREATE_ATTEMPTS,
    MAX_TXN_OPS,
    REGISTRATION_TOKENS,
    Change,
    Record,
    Records,
    chunks,
)
from corral.store.base import CompareFailed, Op, Store

DEFAULT_TOKEN_NAME = "default-token"
TOKEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TOKEN_LENGTH = 54  # Rancher's registration-token length


def new_registration_token() -> str:
    """A fresh registration token (54 characters, ~257 bits)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def token_data(cluster_id: str) -> dict[str, Any]:
    """The stored fields of a new registration token of `cluster_id`."""
    return {"clusterId": cluster_id, "token": new_registration_token(),
            "created": iso_time(now_ms())}


class Clusters:
    """Clusters and their registration tokens in one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records = Records(store, CLUSTERS, "cluster")
        self.tokens = Records(store, REGISTRATION_TOKENS, "cluster registration token")

    # -- clusters --------------------------------------------------------------------------

    async def list_clusters(self) -> tuple[list[Record], int]:
        """Every cluster in id order, and the store revision of the read."""
        return await self.records.list()

    async def require(self, cluster_id: str) -> Record:
        """The cluster, or NotFound."""
        return await self.records.require(cluster_id)

    async def create(self, fields: dict[str, Any]) -> Record:
        """A new cluster with `fields` (name, description, labels) and its `default-token`,
        written together."""
        data = {**fields, "created": iso_time(now_ms())}
        for _ in range(CREATE_ATTEMPTS):
            cluster_id = new_id("c")
            token_id = f"{cluster_id}:{DEFAULT_TOKEN_NAME}"
            try:
                revision = await self.store.txn(
                    [self.records.absent(cluster_id), self.tokens.absent(token_id)],
                    [self.records.put_op(cluster_id, data),
                     self.tokens.put_op(token_id, token_data(cluster_id))],
                )
            except CompareFailed:
                continue  # the random id collided
            return Record(id=cluster_id, data=data, mod_revision=revision)
        raise ChangedConcurrently("could not allocate a free cluster id; try again")

    async def update(self, cluster_id: str, change: Change) -> Record:
        """Apply `change` to the cluster's stored fields (compare on revision)."""
        return await self.records.update(cluster_id, change)

    async def delete(self, cluster: Record) -> None:
        """Delete the cluster and its registration tokens in one transaction that compares the
        cluster's revision (tokens beyond one transaction's limit follow in further ones)."""
        tokens, _ = await self.tokens.list()
        ops: list[Op] = [self.records.delete_op(cluster.id)]
        ops += [self.tokens.delete_op(t.id) for t in tokens
                if t.data.get("clusterId") == cluster.id]
        try:
            await self.store.txn([self.records.unchanged(cluster)], ops[:MAX_TXN_OPS])
        except CompareFailed:
            raise self.records.changed_error(cluster.id) from None
        for rest in chunks(ops[MAX_TXN_OPS:]):
            await self.store.txn([], rest)

    # -- registration tokens ---------------------------------------------------------------

    async def list_tokens(self) -> tuple[list[Record], int]:
        """Every registration token in id order, and the store revision of the read."""
        return await self.tokens.list()

    async def require_token(self, token_id: str) -> Record:
        """The registration token, or NotFound."""
        return await self.tokens.require(token_id)

    async def add_token(self, cluster_id: str) -> Record:
        """Another registration token for an existing cluster (Invalid when the cluster does
        not exist), written only while the cluster is unchanged."""
        for _ in range(CREATE_ATTEMPTS):
            cluster = await self.records.get(cluster_id)
            if cluster is None:
                raise Invalid(f"field 'clusterId': cluster {cluster_id!r} not found")
            token_id = f"{cluster_id}:{new_id('crt')}"
            data = token_data(cluster_id)
            try:
                revision = await self.store.txn(
                    [self.records.unchanged(cluster), self.tokens.absent(token_id)],
                    [self.tokens.put_op(token_id, data)],
                )
            except CompareFailed:
                continue  # the cluster changed (or went) meanwhile, or the id collided
            return Record(id=token_id, data=data, mod_revision=revision)
        raise ChangedConcurrently(f"could not add a token to cluster {cluster_id!r}; try again")

    async def delete_token(self, token: Record) -> bool:
        """Revoke a registration token if unchanged since read."""
        return await self.tokens.delete(token)
