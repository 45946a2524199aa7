"""A rolling upgrade: a new image tag in the Deployment `cattle` rolls the servers out node by
node through the external load balancer, under a steady stream of requests."""

from __future__ import annotations

import json

import psutil
import pytest

from tests.e2e.up.harness import Cluster
from tests.e2e.up.test_up_reconcile import (
    assert_no_failed_request,
    edit,
    rolled_nodes,
    under_load,
)

OLD_IMAGE = "rancher/rancher:latest"
NEW_TAG = "v2.0.8"


def servers(cluster: Cluster) -> dict[str, int]:
    """node → pid of its corral server (from its supervisor's status)."""
    pids = {}
    for node_dir in (cluster.base / "nodes").iterdir():
        status = json.loads((node_dir / "run" / "status.json").read_text())
        pids[node_dir.name] = int(status["services"]["server"]["pid"])
    return pids


def test_dry_run_plans_the_upgrade_node_by_node(cluster: Cluster) -> None:
    """A new image tag: --dry-run plans, per node in turn, drain, change corral server,
    restore; etcd and the ingresses are kept; nothing changes."""
    edit(cluster, OLD_IMAGE, f"rancher/rancher:{NEW_TAG}")
    before = servers(cluster)
    done = cluster.up("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in done.stdout.splitlines() if line.startswith("  [")]
    changes = [line for line in lines if "drain" in line or "restore" in line
               or " change " in line]
    expected = []
    for node in ("node-1", "node-2", "node-3"):
        expected += [f"[rolling] node [{node}] drain", f"[server] node [{node}] change corral "
                     "server", f"[rolling] node [{node}] restore"]
    assert [line[:len(want)] for line, want in zip(changes, expected, strict=True)] == expected
    assert "2 to change" not in done.stdout and "3 to change" in done.stdout
    assert servers(cluster) == before


@pytest.mark.slow
def test_rolling_upgrade_fails_no_request_and_every_node_runs_the_new_version(
    cluster: Cluster,
) -> None:
    """Under load, corral up with the new image tag: one node out of the lb at a time, its
    server restarted and healthy before it is back; no read or write fails; every server
    runs the new version afterwards (a new process with CATTLE_SERVER_VERSION)."""
    if NEW_TAG not in cluster.config.read_text():
        edit(cluster, OLD_IMAGE, f"rancher/rancher:{NEW_TAG}")
    before = servers(cluster)
    done, stats = under_load(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_failed_request(cluster, stats)
    assert rolled_nodes(done.stdout) == ["node-1", "node-2", "node-3"]
    after = servers(cluster)
    for node, pid in after.items():
        assert pid != before[node], f"{node}'s server was not restarted"
        env = psutil.Process(pid).environ()
        assert env["CATTLE_SERVER_VERSION"] == NEW_TAG
        assert env["CATTLE_SERVER_IMAGE"] == f"rancher/rancher:{NEW_TAG}"
    state = json.loads(cluster.state.read_text())
    for node in after:
        spec = json.loads((cluster.node_dir(node) / "run" / "supervisor.json").read_text())
        digest = next(s["digest"] for s in spec["services"] if s["name"] == "server")
        assert state["nodes"][node]["services"]["server"] == digest
    again = cluster.up()
    assert "nothing changed" in again.stdout, again.stdout
