"""Fixtures for the Kubernetes-slice tests: one etcd member and one `corral server` on it per
module (node records are written into that store by the tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.k8s.harness import server_args
from tests.e2e.server.core_harness import CorralServer, start_server
from tests.support.etcd_cluster import EtcdCluster, etcd_available, running_etcd_cluster


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A one-member mutual-TLS etcd cluster."""
    if not etcd_available():
        pytest.skip("etcd is not installed (scripts/setup installs etcd-server)")
    with running_etcd_cluster(tmp_path_factory.mktemp("etcd"), size=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def server(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    """`corral server` with its store in `etcd`."""
    server = start_server(tmp_path_factory.mktemp("k8s-server"), *server_args(etcd))
    yield server
    server.stop()
    print(f"--- corral server output ---\n{server.output()}")
