"""Losing a node under load: kill -9 every process of node-2 while reads and writes flow
through the external load balancer, then `corral up` brings it back."""

from __future__ import annotations

import time

import pytest
from bench.up_load import EjectionWatch, Load, missing_writes

from corral.install.outputs import check_fall_time_s
from corral.server.domain.nodes import HEARTBEAT_INTERVAL_S, NODE_GRACE_PERIOD_S
from tests.e2e.up.harness import FQDN, Cluster
from tests.support.net import wait_until

EJECT_SLACK_S = 3.0  # a loaded 2-core machine: the checks' timers run late
NOT_READY_SLACK_S = 15.0
STEADY_REQUESTS = 50


@pytest.mark.slow
def test_node_loss_under_load_fails_no_read_and_loses_no_write(cluster: Cluster) -> None:
    """kill -9 of node-2: no idempotent request fails, every acknowledged write survives, the
    lb ejects the node within its check fall time, kubectl shows it NotReady within the
    grace period, writes go on; `corral up` brings it back Ready."""
    load = Load(FQDN, cluster.https_port, cluster.ssl_context(), cluster.token())
    load.start()
    try:
        wait_until(lambda: load.snapshot().reads_ok >= STEADY_REQUESTS, timeout=30,
                   what="steady load")
        watch = EjectionWatch(cluster.base / "lb" / "logs" / "lb.log",
                              f"{cluster.address(2)}:80")
        watch.start()
        killed_at = time.monotonic()
        assert cluster.kill_node("node-2")
        wait_until(lambda: cluster.node_status().get("node-2", ("",))[0] == "NotReady",
                   timeout=NODE_GRACE_PERIOD_S + HEARTBEAT_INTERVAL_S + NOT_READY_SLACK_S,
                   interval=1.0, what="kubectl to show node-2 NotReady")
        not_ready_after = time.monotonic() - killed_at
        writes_then = load.snapshot().writes_ok
        wait_until(lambda: load.snapshot().writes_ok >= writes_then + 10, timeout=20,
                   what="writes to go on")
    finally:
        stats = load.stop()
        watch.stop()
    print(f"reads {stats.reads_ok} ok / {stats.reads_failed} failed, writes {stats.writes_ok} "
          f"ok / {stats.writes_failed} failed, ejected {watch.first_s}..{watch.last_s} s, "
          f"NotReady after {not_ready_after:.1f} s, longest write pause "
          f"{stats.longest_write_pause_s(killed_at):.2f} s")
    assert stats.reads_failed == 0, stats.read_errors[:5]
    assert not missing_writes(FQDN, cluster.https_port, cluster.ssl_context(), cluster.token(),
                              stats.acked)
    assert watch.first_s is not None, "the lb never ejected node-2"
    assert watch.last_s is not None and watch.last_s <= check_fall_time_s() + EJECT_SLACK_S, (
        watch.seen)
    assert not_ready_after <= NODE_GRACE_PERIOD_S + HEARTBEAT_INTERVAL_S + NOT_READY_SLACK_S
    assert stats.longest_write_pause_s(killed_at) < check_fall_time_s() + EJECT_SLACK_S
    assert cluster.node_status()["node-1"][0] == "Ready"

    done = cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Restarting etcd member on node [node-2]" in done.stdout
    assert "node [node-1]" not in done.stdout  # the healthy nodes are left alone
    wait_until(lambda: cluster.node_status().get("node-2", ("",))[0] == "Ready", timeout=30,
               interval=0.5, what="node-2 Ready again")
