"""A cluster of real SSH hosts (tests.support.ssh_hosts) built by the real `corral up` with
`provider: ssh`, reached like the local clusters of tests/e2e/up (whose harness this extends).

The cluster file is tests/e2e/up's (Rancher's template in `addons`, AUDIT_LEVEL 1, the external
corral lb on free ports of 127.0.0.1, FQDN localhost) with `provider: ssh`, the nodes at the
hosts' addresses and ports, a per-test key and known_hosts. Every `corral` run gets
CORRAL_BUNDLE: the offline bundle built once per test session, so the release on the nodes does
not change under a test when the source tree does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.up.harness import CLUSTER_FILE, FQDN, UP_TIMEOUT_S, Cluster, corral
from tests.support.net import free_port
from tests.support.ssh_hosts import SshHost, write_known_hosts

ALL_ROLES = "[controlplane, etcd, worker]"
INSTALL_DIRS = ("/opt/corral", "/etc/corral", "/var/lib/corral", "/var/log/corral")


def node_entry(host: SshHost | tuple[str, int], name: str, roles: str = ALL_ROLES,
               extra: str = "") -> str:
    """One `nodes[]` entry (a host, or an address and port where nothing may listen)."""
    address, port = (host.address, host.port) if isinstance(host, SshHost) else host
    return (f"  - address: {address}\n    port: {port}\n    user: root\n"
            f"    hostname_override: {name}\n    role: {roles}\n{extra}")


def cluster_text(nodes: Sequence[str], key: Path | None, known_hosts: Path, https_port: int,
                 http_port: int, top: str = "") -> str:
    """The cluster file: tests/e2e/up's with provider ssh and these `nodes` entries (`key`:
    the top-level ssh_key_path, none when None)."""
    text = CLUSTER_FILE.format(third=9, https_port=https_port, http_port=http_port, fqdn=FQDN)
    head, _, rest = text.partition("nodes:\n")
    rest = rest[rest.index("load_balancer:"):]
    key_line = f"ssh_key_path: {key}\n" if key else ""
    head = head.replace("provider: local\n", f"provider: ssh\n{key_line}"
                        f"ssh_known_hosts_path: {known_hosts}\n{top}")
    return head + "nodes:\n" + "".join(nodes) + rest


@dataclass
class SshCluster(Cluster):
    """A cluster file whose nodes are `hosts`, and what `corral up` made of it."""

    hosts: list[SshHost] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def address(self, index: int) -> str:
        return self.hosts[index - 1].address

    def host(self, name: str) -> SshHost:
        """The host of node `name` (node-1 … in file order)."""
        return self.hosts[int(name.rsplit("-", 1)[1]) - 1]

    def run(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """`corral <args> --config <file>` with the session's bundle."""
        return subprocess.run(corral(*args, "--config", str(self.config)), capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**os.environ, **self.env})

    def up(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return self.run("up", *args, timeout=timeout)

    def processes(self, node: str | None = None) -> list[int]:
        """Live processes Corral left on the hosts (or one) and this machine (the lb)."""
        hosts = [self.host(node)] if node else self.hosts
        found = [pid for host in hosts for pid in host.processes()]
        return found if node else found + super().processes()

    def remove(self) -> subprocess.CompletedProcess[str]:
        """`corral remove --force`; fail if a process of the cluster is left anywhere."""
        done = self.run("remove", "--force", timeout=120)
        left = self.processes()
        if left:
            for host in self.hosts:
                with contextlib.suppress(TimeoutError):
                    host.kill_all()
            raise AssertionError(f"processes left after corral remove: {left}\n{done.stdout}"
                                 f"{done.stderr}")
        return done

    def kill_node(self, name: str) -> list[int]:
        """kill -9 of everything Corral runs on node `name`."""
        return self.host(name).kill_all()


def new_ssh_cluster(directory: Path, hosts: list[SshHost], key: Path,
                    env: dict[str, str]) -> SshCluster:
    """Three all-role nodes on `hosts` (node-1 … node-3), known_hosts with their keys."""
    known = write_known_hosts(directory / "known_hosts", hosts)
    cluster = SshCluster(directory, 9, free_port(), free_port(), hosts=hosts, env=env)
    nodes = [node_entry(h, f"node-{i + 1}") for i, h in enumerate(hosts)]
    cluster.config.write_text(cluster_text(nodes, key, known, cluster.https_port,
                                           cluster.http_port))
    return cluster


def installed_nothing(hosts: Sequence[SshHost]) -> dict[str, str]:
    """address → what is in Corral's directories on each host (empty: nothing installed)."""
    listing = {}
    for host in hosts:
        done = host.run(f"find {' '.join(INSTALL_DIRS)} -mindepth 1 | head -5")
        listing[host.address] = done.stdout.strip()
    return listing
