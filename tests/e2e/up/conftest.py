"""Fixtures: `cluster`, one three-node cluster built by `corral up` for a whole module and
removed (with a check that no process is left) after it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.up.harness import Cluster, new_cluster, up_or_fail
from tests.support.etcd_cluster import etcd_available


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three local nodes and the external corral lb, up for the module."""
    if not etcd_available() or shutil.which("kubectl") is None:
        pytest.skip("needs etcd and kubectl (scripts/setup installs them)")
    built = new_cluster(tmp_path_factory.mktemp("up"))
    up_or_fail(built)
    try:
        yield built
    finally:
        built.remove()
