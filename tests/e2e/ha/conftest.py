"""Fixtures of the HA end-to-end tests: one real 3-member mutual-TLS etcd cluster per module,
and a factory of `corral server` installs on it (each install its own `--etcd-prefix`, so tests
sharing the cluster never see each other's data). Every server started is stopped after its
test; members a test killed are started again before the next test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.ha.harness import HaServer, new_prefix, start_servers
from tests.support.etcd_cluster import EtcdCluster, etcd_available, running_etcd_cluster

StartInstall = Callable[..., list[HaServer]]

pytestmark = pytest.mark.skipif(not etcd_available(), reason="etcd is not installed")


def _report_etcd(cluster: EtcdCluster) -> None:
    for index, member in enumerate(cluster.members):
        print(f"--- etcd {member.name} ({member.client_url}) ---")
        print(cluster.log(index)[-3000:])


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A running 3-member etcd cluster shared by the module's tests."""
    with running_etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def cluster(etcd: EtcdCluster) -> Iterator[EtcdCluster]:
    """The module's etcd cluster with every member running (restarted after a test that
    killed some); its logs are printed when the test fails."""
    yield etcd
    _report_etcd(etcd)
    for index, member in enumerate(etcd.members):
        if not member.alive():
            etcd.restart(index, wait=False)
    for index in range(etcd.size):
        etcd.wait_healthy(index)


@pytest.fixture
def start_install(cluster: EtcdCluster, tmp_path: Path) -> Iterator[StartInstall]:
    """Factory: `start_install(count, *args, env=…, prefix=…)` starts `count` servers of a new
    install together and waits for all of them; all are stopped after the test."""
    started: list[HaServer] = []

    def start(count: int, *args: str, env: dict[str, str] | None = None,
              prefix: str | None = None) -> list[HaServer]:
        base = tmp_path / f"install{len(started)}"
        servers = start_servers(base, cluster, prefix or new_prefix(), count, *args, env=env)
        started.extend(servers)
        return servers

    yield start
    for server in started:
        server.stop()
        print(f"--- corral server (http {server.http_port}) ---\n{server.output()[-6000:]}")
