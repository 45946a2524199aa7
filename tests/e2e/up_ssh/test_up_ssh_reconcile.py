"""Reconcile over SSH: a fourth host added to the cluster file and the third removed, on a
running cluster of real SSH hosts, under a steady stream of requests through the external
load balancer."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.up.harness import up_or_fail
from tests.e2e.up.test_up_reconcile import (
    assert_no_failed_request,
    edit,
    rolled_nodes,
    under_load,
)
from tests.e2e.up_ssh.harness import INSTALL_DIRS, SshCluster, new_ssh_cluster, node_entry
from tests.support.net import wait_until
from tests.support.ssh_hosts import ssh_hosts, write_known_hosts


@pytest.fixture(scope="module")
def four_hosts_cluster(tmp_path_factory: pytest.TempPathFactory, bundle_env: dict[str, str],
                       user_key: Path) -> Iterator[SshCluster]:
    """Four SSH hosts, the cluster built on the first three (node-1 … node-3)."""
    directory = tmp_path_factory.mktemp("up-ssh-reconcile")
    with ssh_hosts(directory / "hosts", 4, [user_key]) as hosts:
        cluster = new_ssh_cluster(directory, hosts[:3], user_key, bundle_env)
        write_known_hosts(directory / "known_hosts", hosts)
        cluster.hosts = list(hosts)
        up_or_fail(cluster)
        try:
            yield cluster
        finally:
            cluster.remove()


def members(cluster: SshCluster) -> set[str]:
    """`etcdctl member list` through node-1, with this machine's copy of the client cert."""
    pki = cluster.base / "nodes" / "node-1" / "pki"
    done = subprocess.run(
        ["etcdctl", f"--endpoints=https://{cluster.address(1)}:2379",
         f"--cacert={pki / 'ca.pem'}", f"--cert={pki / 'etcd-client.pem'}",
         f"--key={pki / 'etcd-client-key.pem'}", "member", "list", "-w", "json"],
        capture_output=True, text=True, timeout=30, check=True)
    return {str(m.get("name", "")) for m in json.loads(done.stdout)["members"]}


@pytest.mark.slow
def test_a_fourth_host_joins_and_the_third_leaves_without_a_failed_request(
    four_hosts_cluster: SshCluster,
) -> None:
    """node-4 (a new host: preflight, bundle, etcd member add, its services, into the lb)
    joins and node-3 leaves (out of the lb, member removed, stopped, its directories
    emptied): no request through the lb fails; kubectl and etcd show the change."""
    cluster = four_hosts_cluster
    third = node_entry(cluster.hosts[2], "node-3")
    edit(cluster, third, node_entry(cluster.hosts[3], "node-4"))
    done, stats = under_load(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert_no_failed_request(cluster, stats)
    assert "[bundle] Shipping the bundle to node [node-4]" in out
    assert out.index("Adding etcd member etcd-node-4") < out.index(
        "Starting etcd member on node [node-4]")
    assert out.index(f"+{cluster.address(4)}:80") < out.index(
        "Removing etcd member etcd-node-3") < out.index("Stopping and deleting node [node-3]")
    assert rolled_nodes(out) == ["node-1", "node-2"]
    # while node-1's and node-2's servers restarted, node-4's ingress (never restarted in
    # this run) re-read its file without them, and then with them: two reloads at least
    ingress_log = cluster.host("node-4").run("cat /var/log/corral/ingress.log").stdout
    assert ingress_log.count("previous workers are draining") >= 2, ingress_log[-2000:]
    assert members(cluster) == {"etcd-node-1", "etcd-node-2", "etcd-node-4"}
    wait_until(lambda: set(cluster.node_status()) == {"node-1", "node-2", "node-4"},
               timeout=30, interval=0.5, what="kubectl get nodes to show node-4, not node-3")
    assert not cluster.host("node-3").processes()
    left = cluster.host("node-3").run(f"find {' '.join(INSTALL_DIRS)} -mindepth 1 | head")
    assert not left.stdout.strip(), left.stdout
