"""Fixtures for the store's end-to-end tests against a real etcd cluster.

* `etcd_cluster` — one 3-member mutual-TLS cluster per module, for tests that leave every member
  running (each test uses its own key prefix).
* `fresh_etcd_cluster` — a 3-member cluster of the test's own, for tests that kill members.

Other test directories use `tests.support.etcd_cluster.running_etcd_cluster(tmp_path, size=3)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd_cluster import EtcdCluster, running_etcd_cluster


def _report(cluster: EtcdCluster) -> None:
    # printed in teardown: pytest shows it only when the test failed
    for index, member in enumerate(cluster.members):
        print(f"--- etcd {member.name} ({member.client_url}) ---")
        print(cluster.log(index)[-4000:])


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A running 3-member etcd cluster shared by the module's tests."""
    with running_etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def fresh_etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A running 3-member etcd cluster of this test's own (members may be killed)."""
    with running_etcd_cluster(tmp_path / "etcd") as cluster:
        yield cluster
        _report(cluster)
