"""The Store contract (tests/unit/test_store_contract.py) against a real 3-member mutual-TLS
etcd cluster: every contract test runs here with backend "etcd", each under a key namespace of
its own on one cluster shared by the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import store_backends
from tests.support.etcd_cluster import EtcdCluster
from tests.unit.test_store_contract import *  # noqa: F403 - the contract's tests, collected here


@pytest.fixture(scope="module", autouse=True)
def _contract_cluster(etcd_cluster: EtcdCluster) -> Iterator[None]:
    """Point the "etcd" contract backend at this module's cluster."""
    store_backends.ETCD_CLUSTER[:] = [etcd_cluster]
    yield
    store_backends.ETCD_CLUSTER.clear()


@pytest.fixture
def backend() -> str:
    """Every contract test in this module runs on etcd."""
    return "etcd"
