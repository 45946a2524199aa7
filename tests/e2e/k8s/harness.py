"""A real `corral server` on a real etcd store, node records written into that store the way
each node's supervisor writes them, and real `kubectl` runs against the server."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from corral.server.domain.nodes import NodeRecord, write_node
from tests.e2e.server.core_harness import CorralServer
from tests.support.etcd_cluster import EtcdCluster

ETCD_PREFIX = "/k8s-e2e"
# kubectl on PATH (Debian's kubernetes-client); another binary can be tried with this variable
KUBECTL = os.environ.get("CORRAL_TEST_KUBECTL", "kubectl")
DAY_MS = 86_400_000


def server_args(cluster: EtcdCluster) -> list[str]:
    """`corral server` flags for the etcd store of `cluster`."""
    return [
        "--etcd-servers", ",".join(cluster.endpoints),
        "--etcd-cafile", str(cluster.ca_file),
        "--etcd-certfile", str(cluster.client_cert),
        "--etcd-keyfile", str(cluster.client_key),
        "--etcd-prefix", ETCD_PREFIX,
    ]  # fmt: skip


def write_nodes(cluster: EtcdCluster, records: Sequence[NodeRecord]) -> None:
    """Write node records into the server's store (what the supervisors do)."""
    from corral.store.etcd import connect_etcd

    async def write() -> None:
        store = await connect_etcd(cluster.options(prefix=ETCD_PREFIX))
        try:
            for record in records:
                await write_node(store, record)
        finally:
            await store.close()

    asyncio.run(write())


def node(
    name: str,
    roles: tuple[str, ...],
    *,
    heartbeat_age_s: float,
    created_days_ago: float,
    address: str,
) -> NodeRecord:
    """A node record whose last heartbeat was `heartbeat_age_s` ago."""
    now = int(time.time() * 1000)
    return NodeRecord(
        name=name,
        roles=roles,
        address=address,
        internal_address=address,
        version="v2.5.0",
        heartbeat_at_ms=now - int(heartbeat_age_s * 1000),
        created_at_ms=now - int(created_days_ago * DAY_MS),
        hostname=name,
    )


def cacerts(server: CorralServer) -> str:
    """The CA PEM clients trust (`GET /cacerts`, as `corral up` fetches it)."""
    response = httpx.get(
        f"{server.http_url}/cacerts", headers={"X-Forwarded-Proto": "https"}, timeout=10
    )
    response.raise_for_status()
    return response.text


def kubeconfig(path: Path, server_url: str, ca_pem: str, token: str) -> Path:
    """A kubeconfig in the shape `corral up` writes: server URL, CA data, admin token."""
    ca_data = base64.b64encode(ca_pem.encode()).decode()
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: local\n  cluster:\n    server: {server_url}\n"
        f"    certificate-authority-data: {ca_data}\n"
        f"users:\n- name: kube-admin-local\n  user:\n    token: {token}\n"
        "contexts:\n- name: local\n  context:\n    cluster: local\n    user: kube-admin-local\n"
        "current-context: local\n"
    )
    return path


@dataclass
class Kubectl:
    """`kubectl --kubeconfig F` with its own discovery cache."""

    config: Path
    cache: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run kubectl with these arguments; its exit code, stdout and stderr."""
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.config), "--cache-dir", str(self.cache), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        """Run kubectl expecting success; its stdout."""
        done = self.run(*args)
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout


def table(output: str) -> list[list[str]]:
    """kubectl's printed table as rows of cells (header first)."""
    return [line.split() for line in output.strip().splitlines()]
