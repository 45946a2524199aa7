"""A `corral up` that fails names the node, the step and the fix; the next run continues from
there instead of starting over."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tests.e2e.up.harness import new_cluster
from tests.support.etcd_cluster import etcd_available


@pytest.mark.slow
@pytest.mark.skipif(not etcd_available() or shutil.which("kubectl") is None,
                    reason="needs etcd and kubectl (scripts/setup installs them)")
def test_a_failed_step_is_reported_and_the_rerun_continues_from_it(tmp_path: Path) -> None:
    """Port 80 of node-3 taken: up stops at [ingress] on node-3 with the fix; once the port
    is free, up starts only what is missing (etcd and servers are kept)."""
    cluster = new_cluster(tmp_path)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((cluster.address(3), 80))
    blocker.listen()
    try:
        failed = cluster.up()
        assert failed.returncode == 1
        assert "FATA[" in failed.stdout
        assert "[ingress] node [node-3]: corral ingress" in failed.stdout
        assert "port 80 of the node's address is free" in failed.stdout
        assert "run `corral up --config" in failed.stdout and "continues" in failed.stdout
        assert "[ingress] corral ingress on node [node-1] is healthy" in failed.stdout
        blocker.close()
        again = cluster.up()
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Starting etcd member" not in again.stdout
        assert "Starting corral server" not in again.stdout
        assert "corral ingress on node [node-3]" in again.stdout
        assert "on node [node-1]" not in again.stdout
        assert cluster.node_status()["node-3"][0] == "Ready"
    finally:
        blocker.close()
        cluster.remove()
    assert not cluster.base.exists() and not cluster.state.exists()
