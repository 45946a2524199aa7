"""`corral up` again on a running cluster whose file changed: a node added and one removed, a
setting changed, the state file lost — under a steady stream of requests through the
external load balancer."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from bench.up_load import Load, LoadStats, missing_writes

from tests.e2e.up.harness import FQDN, Cluster
from tests.support.net import wait_until

STEADY_REQUESTS = 30
UP_TIMEOUT_S = 420.0  # a rollout of three nodes on a busy 2-core machine
OUT = re.compile(r"\[rolling\] Node \[(?P<node>[\w-]+)\] is out of the load balancer")
BACK = re.compile(r"\[rolling\] Node \[(?P<node>[\w-]+)\] is back in the load balancer")
UPDATING = re.compile(r"\[rolling\] Updating .* on node \[(?P<node>[\w-]+)\]")


def node_block(cluster: Cluster, index: int) -> str:
    """The cluster file's entry of node-<index>."""
    return (f"  - address: {cluster.address(index)}\n    hostname_override: node-{index}\n"
            "    role: [controlplane, etcd, worker]\n")


def edit(cluster: Cluster, old: str, new: str) -> None:
    """Replace `old` (which must be there) with `new` in the cluster file."""
    text = cluster.config.read_text()
    assert old in text, old
    cluster.config.write_text(text.replace(old, new, 1))


def members(cluster: Cluster, node: str) -> set[str]:
    """`etcdctl member list` asked of `node`'s member: the member names."""
    pki = cluster.node_dir(node) / "pki"
    done = subprocess.run(
        ["etcdctl", f"--endpoints=https://{cluster.address(int(node[-1]))}:2379",
         f"--cacert={pki / 'ca.pem'}", f"--cert={pki / 'etcd-client.pem'}",
         f"--key={pki / 'etcd-client-key.pem'}", "member", "list", "-w", "json"],
        capture_output=True, text=True, timeout=30, check=True)
    return {str(m.get("name", "")) for m in json.loads(done.stdout)["members"]}


def under_load(cluster: Cluster, *args: str) -> tuple[subprocess.CompletedProcess[str], LoadStats]:
    """`corral up` while readers and a writer go through the load balancer."""
    load = Load(FQDN, cluster.https_port, cluster.ssl_context(), cluster.token())
    load.start()
    try:
        wait_until(lambda: load.snapshot().reads_ok >= STEADY_REQUESTS, timeout=30,
                   what="steady load")
        done = cluster.up(*args, timeout=UP_TIMEOUT_S)
        writes = load.snapshot().writes_ok
        wait_until(lambda: load.snapshot().writes_ok >= writes + 3, timeout=20,
                   what="writes to go on after corral up")
    finally:
        stats = load.stop()
    return done, stats


def assert_no_failed_request(cluster: Cluster, stats: LoadStats) -> None:
    """Every read and write through the load balancer succeeded, and every write is there."""
    assert stats.reads_ok > STEADY_REQUESTS and stats.writes_ok > 0
    assert stats.reads_failed == 0, stats.read_errors[:5]
    assert stats.writes_failed == 0, stats.write_errors[:5]
    assert not missing_writes(FQDN, cluster.https_port, cluster.ssl_context(), cluster.token(),
                              stats.acked)


def rolled_nodes(output: str) -> list[str]:
    """The nodes rolled, in order; fails if two were ever out of the load balancer at once
    or one was updated while in it."""
    out: set[str] = set()
    order: list[str] = []
    for line in output.splitlines():
        if match := OUT.search(line):
            out.add(match["node"])
            order.append(match["node"])
            assert len(out) == 1, f"two nodes out of the load balancer at once: {out}"
        elif match := BACK.search(line):
            out.discard(match["node"])
        elif match := UPDATING.search(line):
            assert match["node"] in out, f"{match['node']} updated in the load balancer"
    assert not out, f"left out of the load balancer: {out}"
    return order


def test_dry_run_plans_the_join_the_rollout_and_the_removal(cluster: Cluster) -> None:
    """node-4 added and node-3 removed: --dry-run prints member add before node-4's etcd,
    the lb reload (+node-4, -node-3), node-by-node drain/change/restore of the others, then
    member remove and node-3's removal; it changes nothing."""
    edit(cluster, node_block(cluster, 3), node_block(cluster, 4))
    before = cluster.state.read_bytes()
    done = cluster.up("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    four, three = cluster.address(4), cluster.address(3)

    def at(text: str) -> int:
        found = [i for i, line in enumerate(lines) if line.startswith(text)]
        assert found, f"{text!r} not in the plan:\n{done.stdout}"
        return found[0]

    assert at("[etcd] node [node-4] member-add etcd-node-4") < at(
        "[etcd] node [node-4] create etcd member") < at("[server] node [node-4] create")
    reload = at("[lb] reload corral lb")
    assert f"+{four}:80" in lines[reload] and f"-{three}:80" in lines[reload]
    assert at("[ingress] node [node-4] create") < reload < at(
        "[rolling] node [node-1] drain") < at("[server] node [node-1] change") < at(
        "[rolling] node [node-1] restore") < at("[rolling] node [node-2] drain")
    assert reload < at("[remove] node [node-3] member-remove etcd-node-3") < at(
        "[remove] node [node-3] remove")
    assert cluster.state.read_bytes() == before
    assert not cluster.node_dir("node-4").exists()


@pytest.mark.slow
def test_a_node_joins_and_one_leaves_without_a_failed_request(cluster: Cluster) -> None:
    """Under load, node-4 joins (etcd member added, then its services; the lb gains it) and
    node-3 leaves (out of the lb first, then its member removed, its services stopped, its
    files deleted): no request fails, kubectl and etcd show the change."""
    if "node-4" not in cluster.config.read_text():
        edit(cluster, node_block(cluster, 3), node_block(cluster, 4))
    done, stats = under_load(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert_no_failed_request(cluster, stats)
    assert out.index("Adding etcd member etcd-node-4") < out.index(
        "Starting etcd member on node [node-4]") < out.index("Starting corral ingress on node "
                                                             "[node-4]")
    assert out.index("Starting corral ingress on node [node-4]") < out.index(
        f"+{cluster.address(4)}:80") < out.index("Removing etcd member etcd-node-3") < out.index(
        "Stopping and deleting node [node-3]")
    assert rolled_nodes(out) == ["node-1", "node-2"]
    assert members(cluster, "node-1") == {"etcd-node-1", "etcd-node-2", "etcd-node-4"}
    wait_until(lambda: set(cluster.node_status()) == {"node-1", "node-2", "node-4"},
               timeout=30, interval=0.5, what="kubectl get nodes to show node-4, not node-3")
    assert all(status == "Ready" for status, _ in cluster.node_status().values())
    assert not cluster.processes("node-3") and not cluster.node_dir("node-3").exists()
    servers = (cluster.directory / f"{cluster.stem}.lb.yml").read_text()
    assert f"{cluster.address(4)}:80" in servers and f"{cluster.address(3)}:80" not in servers
    again = cluster.up()
    assert "nothing changed" in again.stdout, again.stdout


@pytest.mark.slow
def test_a_changed_setting_is_rolled_out_node_by_node(cluster: Cluster) -> None:
    """The Ingress's proxy-read-timeout and the audit level changed: each node in turn
    leaves the lb, restarts its server and ingress, is healthy and comes back; no request
    fails; every node runs the new settings."""
    edit(cluster, 'proxy-read-timeout: "1800"', 'proxy-read-timeout: "1700"')
    edit(cluster, 'value: "1"', 'value: "2"')
    done, stats = under_load(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_failed_request(cluster, stats)
    nodes = sorted(p.name for p in (cluster.base / "nodes").iterdir())
    assert rolled_nodes(done.stdout) == nodes
    for node in nodes:
        spec = json.loads((cluster.node_dir(node) / "run" / "supervisor.json").read_text())
        server = next(s for s in spec["services"] if s["name"] == "server")
        assert server["env"]["AUDIT_LEVEL"] == "2"
        assert "1700" in (cluster.node_dir(node) / "ingress" / "ingress.yml").read_text()


def test_a_lost_state_file_is_rebuilt_from_the_nodes(cluster: Cluster, tmp_path: Path) -> None:
    """The state file deleted: corral up rebuilds it from the running nodes (same admin
    password, the etcd members), restarts nothing and says so."""
    recorded = json.loads(cluster.state.read_text())
    (tmp_path / "backup.corralstate").write_bytes(cluster.state.read_bytes())
    cluster.state.unlink()
    done = cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Rebuilt" in done.stdout and "nothing changed" in done.stdout, done.stdout
    rebuilt = json.loads(cluster.state.read_text())
    assert rebuilt["admin"]["password"] == recorded["admin"]["password"]
    assert rebuilt["etcdMembers"] == recorded["etcdMembers"]
    assert rebuilt["nodes"].keys() == recorded["nodes"].keys()
    assert rebuilt["pki"]["ca"]["cert"] == recorded["pki"]["ca"]["cert"]
