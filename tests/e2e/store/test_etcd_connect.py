"""connect_etcd against a real mutual-TLS cluster: what it says when the CA, the client
certificate, the endpoints or a file is wrong, and the store's own etcd behaviour (status,
compaction, lease TTL rounding)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from corral.pki import certificate_pem, create_ca, issue_certificate, private_key_pem
from corral.store.base import Compacted
from corral.store.etcd import (
    EtcdConfigError,
    EtcdOptions,
    EtcdTLSError,
    EtcdUnreachable,
    connect_etcd,
)
from tests.support.etcd_cluster import EtcdCluster, free_port_on


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA etcd does not trust, and a client certificate and key it signed."""
    base = tmp_path_factory.mktemp("stranger")
    ca, ca_key = create_ca("a CA etcd does not trust")
    cert, key = issue_certificate(ca, ca_key, common_name="stranger", server=False, client=True)
    files = {"ca": base / "ca.pem", "cert": base / "client.pem", "key": base / "client-key.pem"}
    files["ca"].write_bytes(certificate_pem(ca))
    files["cert"].write_bytes(certificate_pem(cert))
    files["key"].write_bytes(private_key_pem(key))
    return files


def _connect(options: EtcdOptions) -> None:
    async def main() -> None:
        store = await connect_etcd(options)
        await store.close()

    asyncio.run(main())


def test_wrong_ca_says_the_server_certificate_is_not_signed_by_it(
    etcd_cluster: EtcdCluster, stranger: dict[str, Path]
) -> None:
    """A CA that did not sign etcd's certificate: EtcdTLSError naming the CA file."""
    options = dataclasses.replace(etcd_cluster.options(), cafile=stranger["ca"])
    with pytest.raises(EtcdTLSError) as info:
        _connect(options)
    message = str(info.value)
    assert "is not signed by the CA in" in message and str(stranger["ca"]) in message
    assert info.value.option == "cafile"


def test_client_certificate_from_another_ca_is_refused(
    etcd_cluster: EtcdCluster, stranger: dict[str, Path]
) -> None:
    """A client certificate etcd does not trust: EtcdTLSError naming the certificate file."""
    options = dataclasses.replace(
        etcd_cluster.options(), certfile=stranger["cert"], keyfile=stranger["key"]
    )
    with pytest.raises(EtcdTLSError) as info:
        _connect(options)
    message = str(info.value)
    assert "refused the client certificate" in message and str(stranger["cert"]) in message
    assert info.value.option == "certfile"


def test_no_client_certificate_is_refused(etcd_cluster: EtcdCluster) -> None:
    """Without a client certificate: EtcdTLSError saying etcd requires one."""
    options = dataclasses.replace(etcd_cluster.options(), certfile=None, keyfile=None)
    with pytest.raises(EtcdTLSError, match="requires a client certificate"):
        _connect(options)


def test_unreachable_endpoints_are_each_named(etcd_cluster: EtcdCluster) -> None:
    """Endpoints nobody listens on: EtcdUnreachable listing each one as refused."""
    hosts = ["127.0.251.1", "127.0.251.2"]
    urls = tuple(f"https://{host}:{free_port_on(host)}" for host in hosts)
    options = dataclasses.replace(etcd_cluster.options(), endpoints=urls, dial_timeout=2.0)
    with pytest.raises(EtcdUnreachable) as info:
        _connect(options)
    message = str(info.value)
    assert "cannot reach etcd at any of its endpoints" in message
    assert all(f"{url}: connection refused" in message for url in urls)
    assert info.value.endpoints == urls


def test_missing_file_is_named(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """A TLS file that does not exist: EtcdConfigError naming it and the option."""
    missing = tmp_path / "nope" / "client-key.pem"
    options = dataclasses.replace(etcd_cluster.options(), keyfile=missing)
    with pytest.raises(EtcdConfigError) as info:
        _connect(options)
    assert str(info.value) == f"etcd client key {missing} does not exist"
    assert info.value.option == "keyfile"


def test_key_of_another_certificate_is_refused_before_dialling(
    etcd_cluster: EtcdCluster, stranger: dict[str, Path]
) -> None:
    """A key that is not the certificate's: EtcdConfigError saying they do not match."""
    options = dataclasses.replace(etcd_cluster.options(), keyfile=stranger["key"])
    with pytest.raises(EtcdConfigError, match="does not match the certificate") as info:
        _connect(options)
    assert info.value.option == "keyfile"


def test_one_dead_endpoint_among_live_ones_still_connects(etcd_cluster: EtcdCluster) -> None:
    """connect_etcd succeeds on the first endpoint that answers, skipping a dead one."""
    dead = f"https://127.0.251.3:{free_port_on('127.0.251.3')}"
    options = dataclasses.replace(
        etcd_cluster.options(prefix="/c1"), endpoints=(dead, *etcd_cluster.endpoints)
    )

    async def main() -> None:
        store = await connect_etcd(options)
        try:
            assert store.endpoint == etcd_cluster.endpoints[0]
            assert await store.put("/k", b"v") > 0
        finally:
            await store.close()

    asyncio.run(main())


def test_status_lists_every_member_and_the_leader(etcd_cluster: EtcdCluster) -> None:
    """status() names backend etcd, the endpoint in use and each member, one of them leader."""

    async def main() -> None:
        store = await connect_etcd(etcd_cluster.options(prefix="/st"))
        try:
            status = await store.status()
        finally:
            await store.close()
        assert (status.backend, status.endpoint, status.healthy) == (
            "etcd",
            etcd_cluster.endpoints[0],
            True,
        )
        assert sorted(m.endpoint for m in status.members) == sorted(etcd_cluster.endpoints)
        assert sorted(m.detail for m in status.members) == ["follower", "follower", "leader"]

    asyncio.run(main())


def test_compaction_makes_old_revisions_unwatchable(etcd_cluster: EtcdCluster) -> None:
    """After compact(R) a watch from before R raises Compacted with R; from R it replays."""

    async def main() -> None:
        store = await connect_etcd(etcd_cluster.options(prefix="/cp"))
        try:
            revisions = [await store.put("/k", b"%d" % i) for i in range(5)]
            await store.compact(revisions[3])
            with pytest.raises(Compacted) as info:
                await anext(store.watch("/", start_revision=revisions[1]))
            assert info.value.compact_revision == revisions[3]
            events = store.watch("/", start_revision=revisions[3])
            got = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
            assert [e.kv.mod_revision for e in got] == revisions[3:]
            await store.compact(revisions[2])  # already compacted: nothing happens
        finally:
            await store.close()

    asyncio.run(main())


def test_short_lease_ttl_is_rounded_up_to_etcds_minimum(etcd_cluster: EtcdCluster) -> None:
    """A 1 s lease is granted with etcd's minimum TTL (2 s with the default election timeout)."""

    async def main() -> None:
        store = await connect_etcd(etcd_cluster.options(prefix="/ttl"))
        try:
            lease = await store.grant_lease(1)
            assert await store.keep_alive(lease) == 2
            await store.revoke_lease(lease)
        finally:
            await store.close()

    asyncio.run(main())
