"""Faults over SSH that the preflight cannot see coming, or that come after it: a node that
dies while `corral up` runs (its sshd host killed, every process in it gone), and a disk too
small for Corral's configuration directory. The run stops naming the node, the step and the
fix, says what was left half-done, and a re-run with the node back finishes the job.

(Unreachable nodes, refused keys, changed host keys, an old python3, taken ports and a small
/opt/corral are caught by the preflight: test_up_ssh_preflight.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.up.harness import UP_TIMEOUT_S
from tests.e2e.up_ssh.harness import SshCluster, installed_nothing, new_ssh_cluster
from tests.support.net import wait_until
from tests.support.procs import ManagedProcess, corral_argv
from tests.support.ssh_hosts import SshHost, ssh_hosts


def fatal_lines(out: str) -> str:
    """The FATA lines of a run's output (and their continuation lines)."""
    keep, inside = [], False
    for line in out.splitlines():
        if line.startswith("FATA["):
            inside = True
        elif line[:5] in ("INFO[", "WARN["):
            inside = False
        if inside:
            keep.append(line)
    return "\n".join(keep)


@pytest.fixture
def cluster(tmp_path: Path, bundle_env: dict[str, str], user_key: Path) -> Iterator[SshCluster]:
    """Three fresh SSH hosts and the cluster file for them (not built yet); removed after."""
    with ssh_hosts(tmp_path / "hosts", 3, [user_key]) as hosts:
        made = new_ssh_cluster(tmp_path, hosts, user_key, bundle_env)
        try:
            yield made
        finally:
            for host in hosts:  # a host a test stopped comes back for corral remove
                if host.process is None or not host.process.alive():
                    host.start()
            made.remove()


def up_in_background(cluster: SshCluster) -> ManagedProcess:
    """`corral up` running, its output readable while it runs."""
    return ManagedProcess(corral_argv("up", "--config", str(cluster.config)),
                          env=cluster.env, name="corral-up")


def up_killing(cluster: SshCluster, node: str, when: str) -> str:
    """`corral up`, with node `node`'s host killed (sshd and every process in it) once the
    run prints `when`; the run's output, after checking that it failed cleanly (exit 1,
    no traceback)."""
    run = up_in_background(cluster)
    try:
        wait_until(lambda: when in run.output() or not run.alive(), timeout=UP_TIMEOUT_S,
                   interval=0.05, what=f"corral up to print {when!r}")
        assert run.alive(), run.output()
        cluster.host(node).stop()
        run.proc.wait(timeout=UP_TIMEOUT_S)
        out = run.output()
    finally:
        run.stop()
    assert run.proc.returncode == 1, out
    assert "Traceback" not in out, out
    return out


@pytest.mark.slow
def test_a_node_dying_halfway_is_named_with_the_step_and_a_rerun_finishes(
    cluster: SshCluster,
) -> None:
    """node-3's host is killed while its release installs: the run stops at [bundle] naming
    node-3, the half-installed release and the fix, after the other nodes finished theirs.
    With node-3 back (empty disks), node-2's host is killed once its etcd member is being
    started: the run names node-2, the step under way there and what may be half-done. With
    node-2 back, the next run ships only to node-2 and finishes: every node Ready, every
    service recorded."""
    out = up_killing(cluster, "node-3", "Installing corral==0.1.0 on node [node-3]")
    fatal = fatal_lines(out)
    host = cluster.host("node-3")
    assert (f"[bundle] node [node-3]: root@{host.address}:{host.port} stopped answering while "
            "corral==0.1.0 was being shipped or installed there") in fatal, out
    assert "Half-done: an incomplete release in /opt/corral/releases/" in fatal, fatal
    assert "no service was started on any node" in fatal, fatal
    assert "fix: bring node [node-3] back" in fatal and "run `corral up --config" in fatal
    assert "node [node-1]" not in fatal and "node [node-2]" not in fatal, fatal
    assert "corral==0.1.0 installed on node [node-1]" in out  # the others finished theirs
    host.start()

    out = up_killing(cluster, "node-2", "Starting etcd member on node [node-2]")
    assert "Shipping the bundle to node [node-3]" in out
    assert "Shipping the bundle to node [node-1]" not in out
    fatal = fatal_lines(out)
    host = cluster.host("node-2")
    assert f"node [node-2] (root@{host.address}:{host.port}) stopped answering while " in fatal
    assert "Half-done: node [node-2] may hold some of this step's files or processes" in fatal
    assert "fix: bring node [node-2] back" in fatal, fatal
    host.start()

    again = cluster.up()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Shipping the bundle to node [node-2]" in again.stdout
    assert "Shipping the bundle to node [node-3]" not in again.stdout
    wait_until(lambda: len(cluster.node_status()) == 3
               and all(s == "Ready" for s, _ in cluster.node_status().values()),
               timeout=60, interval=0.5, what="three nodes Ready")
    recorded = json.loads(cluster.state.read_text())["nodes"]
    assert all(set(recorded[n]["services"]) == {"etcd", "server", "ingress"}
               for n in ("node-1", "node-2", "node-3")), recorded


@pytest.fixture(scope="module")
def tiny_config_host(tmp_path_factory: pytest.TempPathFactory, user_key: Path
                     ) -> Iterator[SshHost]:
    """A host whose /etc/corral is a 512 KiB filesystem, nearly full."""
    host = SshHost(tmp_path_factory.mktemp("tiny") / "host", "127.0.9.251", [user_key],
                   sizes={"/etc/corral": "512k"})
    host.start()
    host.run("head -c 400000 /dev/zero > /etc/corral/filler")
    try:
        yield host
    finally:
        host.stop()


def test_a_full_configuration_disk_is_caught_before_anything_changes(
    tmp_path: Path, bundle_env: dict[str, str], user_key: Path, tiny_config_host: SshHost,
) -> None:
    """node-1's /etc/corral (certificates, configuration) has no room: the preflight names
    the path, the space and the fix, and nothing is installed on any node."""
    with ssh_hosts(tmp_path / "hosts", 2, [user_key]) as good:
        hosts = [tiny_config_host, *good]
        cluster = new_ssh_cluster(tmp_path, hosts, user_key, bundle_env)
        done = subprocess.run(corral_argv("up", "--config", str(cluster.config)),
                              capture_output=True, text=True, timeout=UP_TIMEOUT_S,
                              check=False, env={**os.environ, **bundle_env})
        assert done.returncode == 1, done.stdout + done.stderr
        fatal = fatal_lines(done.stdout)
        assert "[preflight] node [node-1]: /etc/corral has 0 MB free; Corral needs" in fatal
        assert "fix: free space on the filesystem of /etc/corral" in fatal
        assert "node [node-2]" not in fatal and "node [node-3]" not in fatal
        listing = installed_nothing(hosts)
        assert listing == {**{h.address: "" for h in good},
                           tiny_config_host.address: "/etc/corral/filler"}, listing
