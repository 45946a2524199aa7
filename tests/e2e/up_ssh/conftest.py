"""Fixtures: the offline bundle (built once per session), a key, and `ssh_cluster`: three SSH
hosts built by `corral up` for a whole module, removed after it with a check that nothing is
left running on any host."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.install.bundle import BUNDLE_ENV, build_bundle
from tests.e2e.up.harness import up_or_fail
from tests.e2e.up_ssh.harness import SshCluster, new_ssh_cluster
from tests.support.etcd_cluster import etcd_available
from tests.support.ssh_hosts import make_key, ssh_hosts, sshd_available


def needs_hosts() -> None:
    """Skip unless real SSH hosts, etcd and kubectl can be had here."""
    if not sshd_available() or not etcd_available() or shutil.which("kubectl") is None:
        pytest.skip("needs root, sshd, unshare, etcd and kubectl (scripts/setup installs them)")


@pytest.fixture(scope="session")
def bundle_env() -> dict[str, str]:
    """CORRAL_BUNDLE for every corral run: the bundle of this source tree, built once."""
    needs_hosts()
    return {BUNDLE_ENV: str(build_bundle().directory)}


@pytest.fixture(scope="module")
def user_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key every host of the module trusts."""
    return make_key(tmp_path_factory.mktemp("keys") / "id_ed25519")


@pytest.fixture(scope="module")
def ssh_cluster(tmp_path_factory: pytest.TempPathFactory, bundle_env: dict[str, str],
                user_key: Path) -> Iterator[SshCluster]:
    """Three SSH hosts with all roles, and the external corral lb, up for the module."""
    directory = tmp_path_factory.mktemp("up-ssh")
    with ssh_hosts(directory / "hosts", 3, [user_key]) as hosts:
        cluster = new_ssh_cluster(directory, hosts, user_key, bundle_env)
        up_or_fail(cluster)
        try:
            yield cluster
        finally:
            cluster.remove()
