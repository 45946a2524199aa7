"""etcd snapshots of a cluster built by `corral up` (RKE's `rke etcd snapshot-save` /
`snapshot-restore`): save, restore after more writes, the errors that stop a restore, the
recurring snapshots of `services.etcd` (`backup: true`). Save and restore over SSH are tested
on the SSH hosts of tests/e2e/up_ssh/test_up_ssh_cluster.py."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.up.harness import Cluster, corral, new_cluster, up_or_fail
from tests.support.etcd_cluster import etcd_available
from tests.support.net import wait_until

NODES = ("node-1", "node-2", "node-3")
SNAPSHOTS = "rootfs/opt/corral/etcd-snapshots"
BACKUP = """\
services:
  etcd:
    backup: true
    creation: 6h
    retention: 24h
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three local nodes and the lb, with recurring snapshots asked for (every 6 h, kept 24 h),
    up for the module."""
    if not etcd_available() or shutil.which("kubectl") is None:
        pytest.skip("needs etcd and kubectl (scripts/setup installs them)")
    built = new_cluster(tmp_path_factory.mktemp("snapshots"))
    built.config.write_text(built.config.read_text() + "\n" + BACKUP)
    up_or_fail(built)
    try:
        yield built
    finally:
        built.remove()


def etcd_cmd(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`corral etcd <args> --config <the cluster file>` to its end."""
    return subprocess.run(corral("etcd", *args, "--config", str(cluster.config)),
                          capture_output=True, text=True, timeout=240, check=False)


def snapshot_dir(cluster: Cluster, node: str) -> Path:
    """The node's /opt/corral/etcd-snapshots (under its rootfs with the local provider)."""
    return cluster.node_dir(node) / SNAPSHOTS


def admin(cluster: Cluster) -> dict[str, str]:
    """The kubeconfig's admin token as a header (created by `corral up`, before any snapshot)."""
    return {"Authorization": f"Bearer {cluster.token()}"}


def new_token(cluster: Cluster, description: str) -> None:
    """Create an API token through the load balancer (a write to etcd)."""
    with cluster.client() as client:
        answer = client.post("/v3/tokens", json={"description": description},
                             headers=admin(cluster))
    assert answer.status_code == 201, answer.text


def token_descriptions(cluster: Cluster) -> set[str]:
    """The descriptions of the admin's tokens, read through the load balancer."""
    with cluster.client() as client:
        answer = client.get("/v3/tokens", headers=admin(cluster))
    assert answer.status_code == 200, answer.text
    return {str(t.get("description", "")) for t in answer.json()["data"]}


def service_pids(cluster: Cluster) -> dict[str, int | None]:
    """node/service → pid from each node's supervisor status."""
    pids: dict[str, int | None] = {}
    for node in NODES:
        status = json.loads((cluster.node_dir(node) / "run" / "status.json").read_text())
        for name, entry in status["services"].items():
            pids[f"{node}/{name}"] = entry["pid"]
    return pids


def test_restore_errors_name_the_snapshot_the_node_and_the_fix(cluster: Cluster) -> None:
    """An unknown name lists the snapshots there are; a copy that fails its checksum names the
    node and stops the restore before anything is stopped; a taken name and a bad --name are
    refused."""
    saved = etcd_cmd(cluster, "snapshot-save", "--name", "damaged")
    assert saved.returncode == 0, saved.stdout + saved.stderr

    unknown = etcd_cmd(cluster, "snapshot-restore", "--name", "no-such-snapshot")
    assert unknown.returncode == 1
    assert "no snapshot named [no-such-snapshot] on any etcd node" in unknown.stdout
    assert "damaged" in unknown.stdout and "snapshot-list" in unknown.stdout

    before = service_pids(cluster)
    with open(snapshot_dir(cluster, "node-2") / "damaged", "ab") as file:
        file.write(b"bit rot")
    bad = etcd_cmd(cluster, "snapshot-restore", "--name", "damaged")
    assert bad.returncode == 1
    assert "node [node-2]" in bad.stdout and "does not match its checksum" in bad.stdout
    assert "nothing was changed" in bad.stdout and "Stopping" not in bad.stdout
    assert service_pids(cluster) == before

    listed = etcd_cmd(cluster, "snapshot-list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("damaged "))
    assert "node-1" in row and "node-2 (bad checksum)" in row and "node-3" in row

    again = etcd_cmd(cluster, "snapshot-save", "--name", "damaged")
    assert again.returncode == 1 and "already exists" in again.stdout
    slash = etcd_cmd(cluster, "snapshot-save", "--name", "../escape")
    assert slash.returncode == 2 and "--name" in slash.stderr


@pytest.mark.slow
def test_restore_brings_back_the_data_of_the_snapshot_and_the_cluster_serves(
    cluster: Cluster,
) -> None:
    """snapshot-save puts the same snapshot (and its sha256) on every etcd node; after more
    writes, snapshot-restore (copying the snapshot to a node that lost it) brings back exactly
    the snapshot's data: the earlier token is there, the later one gone; login through the lb,
    kubectl get nodes and a `corral up` re-run that changes nothing."""
    earlier, later = f"before-{uuid.uuid4().hex[:8]}", f"after-{uuid.uuid4().hex[:8]}"
    new_token(cluster, earlier)

    saved = etcd_cmd(cluster, "snapshot-save")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    found = re.search(r"Saving snapshot \[([^\]]+)\]", saved.stdout)
    assert found is not None, saved.stdout
    name = found.group(1)
    assert name.startswith("corral_etcd_snapshot_") and name.endswith("Z")
    digests = set()
    for node in NODES:
        data = (snapshot_dir(cluster, node) / name).read_bytes()
        recorded = (snapshot_dir(cluster, node) / f"{name}.sha256").read_text().split()[0]
        assert hashlib.sha256(data).hexdigest() == recorded
        digests.add(recorded)
        assert f"to node [{node}]" in saved.stdout or f"on etcd node [{node}]" in saved.stdout
    assert len(digests) == 1  # one snapshot, the same bytes everywhere

    new_token(cluster, later)
    assert {earlier, later} <= token_descriptions(cluster)
    (snapshot_dir(cluster, "node-3") / name).unlink()
    (snapshot_dir(cluster, "node-3") / f"{name}.sha256").unlink()

    restored = etcd_cmd(cluster, "snapshot-restore", "--name", name)
    out = restored.stdout
    assert restored.returncode == 0, out + restored.stderr
    assert "missing on node [node-3]: copying it from node [node-1]" in out
    for node in NODES:
        assert f"Restoring etcd member [etcd-{node}] on node [{node}]" in out
    assert "corral lb (external load balancer) is healthy" in out
    assert (snapshot_dir(cluster, "node-3") / f"{name}.sha256").is_file()

    descriptions = token_descriptions(cluster)
    assert earlier in descriptions and later not in descriptions
    state = json.loads(cluster.state.read_text())
    with cluster.client() as client:
        login = client.post("/v3-public/localProviders/local?action=login",
                            json={"username": "admin", "password": state["admin"]["password"]})
    assert login.status_code == 201, login.text
    wait_until(lambda: sorted(cluster.node_status()) == list(NODES), timeout=60, interval=0.5,
               what="kubectl get nodes to list the three nodes")
    rerun = cluster.up()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "nothing changed" in rerun.stdout, rerun.stdout


@pytest.mark.slow
def test_recurring_snapshots_are_taken_by_each_member_and_pruned(cluster: Cluster) -> None:
    """`backup: true` runs each member under `corral etcd snapshot-loop` (every 6 h, kept
    24 h); a `corral up` re-run with `creation: 2s` and `retention: 6s` restarts the members,
    and each etcd node then takes `<time>_etcd` snapshots with a good sha256 and removes those
    older than 6 s, never the newest; one-time snapshots stay; the cluster serves."""
    def etcd_argv(node: str) -> list[str]:
        spec = json.loads((cluster.node_dir(node) / "run" / "supervisor.json").read_text())
        return list(next(s["argv"] for s in spec["services"] if s["name"] == "etcd"))

    argv = etcd_argv("node-1")
    assert argv[argv.index("etcd") + 1] == "snapshot-loop"
    assert argv[argv.index("--creation") + 1] == "21600s"
    assert argv[argv.index("--retention") + 1] == "86400s"
    assert "/usr/bin/etcd" in argv[argv.index("--") + 1:]

    text = cluster.config.read_text()
    cluster.config.write_text(text.replace("creation: 6h", "creation: 2s")
                              .replace("retention: 24h", "retention: 6s"))
    done = cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    for node in NODES:
        argv = etcd_argv(node)
        assert argv[argv.index("--creation") + 1] == "2s", node
        assert argv[argv.index("--retention") + 1] == "6s", node

    def recurring(node: str) -> list[str]:
        return sorted(p.name for p in snapshot_dir(cluster, node).iterdir()
                      if p.name.endswith("_etcd"))

    def newest_checked(node: str) -> str:
        """The node's newest recurring snapshot, once it is there with a matching sha256."""
        directory = snapshot_dir(cluster, node)
        newest = recurring(node)[-1]
        checksum = (directory / f"{newest}.sha256").read_text().split()[0]
        assert hashlib.sha256((directory / newest).read_bytes()).hexdigest() == checksum
        return newest

    for node in NODES:
        seen = wait_until(lambda n=node: newest_checked(n), timeout=60,
                          what=f"a recurring snapshot with its sha256 on {node}")
        directory = snapshot_dir(cluster, node)
        wait_until(lambda n=node, f=seen, d=directory: f not in recurring(n)
                   and not (d / f"{f}.sha256").exists() and recurring(n),
                   timeout=60, what=f"{seen} and its .sha256 on {node} to be removed after 6s")
    assert (snapshot_dir(cluster, "node-1") / "damaged").is_file()  # a one-time snapshot stays
    log = (cluster.node_dir("node-1") / "logs" / "etcd.log").read_text()
    assert "took snapshot" in log and "removed snapshot" in log
    with cluster.client() as client:
        assert client.get("/ping").text == "pong"
