"""open_store / connect_store pick the backend from the URL: memory, sqlite, and etcd (which
must connect, here to a real cluster)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import pytest

from corral.store import connect_store, open_store
from corral.store.etcd import EtcdStore
from corral.store.memory import MemoryStore
from corral.store.sqlite import SqliteStore
from tests.support.etcd_cluster import EtcdCluster


def test_sync_urls_open_memory_and_sqlite(tmp_path: Path) -> None:
    """memory://, sqlite:///abs and a directory path open the right backend; bad URLs say why."""

    async def main() -> None:
        stores = [
            open_store("memory://"),
            open_store(f"sqlite://{tmp_path}/a.db"),
            open_store(tmp_path / "dir"),
        ]
        try:
            assert [type(s) for s in stores] == [MemoryStore, SqliteStore, SqliteStore]
        finally:
            for store in stores:
                await store.close()
        assert (tmp_path / "dir" / "store.db").exists()

    (tmp_path / "dir").mkdir()
    asyncio.run(main())
    with pytest.raises(ValueError, match="unknown scheme; use one of memory://"):
        open_store("redis://x")
    with pytest.raises(ValueError, match="three slashes"):
        open_store("sqlite://relative.db")
    with pytest.raises(ValueError, match="must connect first"):
        open_store("etcd://127.0.0.1:2379")


def test_etcd_url_connects_with_its_tls_files(etcd_cluster: EtcdCluster) -> None:
    """etcd://host:port,...?cafile=&certfile=&keyfile=&prefix= connects to the cluster."""
    hosts = ",".join(url.removeprefix("https://") for url in etcd_cluster.endpoints)
    query = urlencode(
        {
            "cafile": etcd_cluster.ca_file,
            "certfile": etcd_cluster.client_cert,
            "keyfile": etcd_cluster.client_key,
            "prefix": "/registry",
        }
    )

    async def main() -> None:
        store = await connect_store(f"etcd://{hosts}/?{query}")
        try:
            assert isinstance(store, EtcdStore)
            assert store.name == f"etcd ({', '.join(etcd_cluster.endpoints)})"
            revision = await store.put("/k", b"v")
            kvs, _ = await store.range("")
            assert [(kv.key, kv.mod_revision) for kv in kvs] == [("/k", revision)]
        finally:
            await store.close()
        with pytest.raises(ValueError, match="unknown parameter 'bogus'"):
            await connect_store(f"etcd://{hosts}/?bogus=1")

    asyncio.run(main())
