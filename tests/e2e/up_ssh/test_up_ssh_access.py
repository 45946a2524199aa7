"""Reaching the nodes as RKE's cluster file allows: through a bastion host, with the keys of an
SSH agent; and the air gap: nodes that install Corral from a private package index
(`private_registries`) instead of the shipped wheels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from corral.install.bundle import load_bundle
from tests.e2e.up.harness import up_or_fail
from tests.e2e.up_ssh.harness import (
    ALL_ROLES,
    SshCluster,
    cluster_text,
    installed_nothing,
    node_entry,
)
from tests.support.net import free_port, wait_port, wait_until
from tests.support.procs import ManagedProcess, corral_argv
from tests.support.ssh_hosts import SshHost, address_block, ssh_hosts, write_known_hosts


def dry_run(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`corral up --dry-run` (preflight over SSH included)."""
    return subprocess.run(corral_argv("up", "--config", str(config), "--dry-run"),
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env})


def test_every_node_is_reached_through_the_bastion_host(
    tmp_path: Path, bundle_env: dict[str, str], user_key: Path
) -> None:
    """`bastion_host`: the checks of all three nodes pass, and the bastion's sshd forwarded a
    connection to each of them (direct-tcpip)."""
    with ssh_hosts(tmp_path / "nodes", 3, [user_key]) as hosts:
        bastion = SshHost(tmp_path / "bastion", address_block(1)[0], [user_key],
                          log_level="DEBUG1").start()
        try:
            known = write_known_hosts(tmp_path / "known_hosts", [*hosts, bastion])
            top = (f"bastion_host:\n  address: {bastion.address}\n  port: {bastion.port}\n"
                   "  user: root\n")
            config = tmp_path / "rancher-cluster.yml"
            config.write_text(cluster_text(
                [node_entry(h, f"node-{i + 1}") for i, h in enumerate(hosts)], user_key, known,
                free_port(), free_port(), top))
            done = dry_run(config, bundle_env)
            assert done.returncode == 0, done.stdout + done.stderr
            for i in range(3):
                assert f"[preflight] node [node-{i + 1}]" in done.stdout
            log = bastion.log()
            for host in hosts:
                assert (f"server_request_direct_tcpip: originator  port 0, target "
                        f"{host.address} port {host.port}") in log, log[-2000:]
        finally:
            bastion.stop()


def test_the_keys_of_an_ssh_agent_log_in_when_ssh_agent_auth_is_on(
    tmp_path: Path, bundle_env: dict[str, str], user_key: Path
) -> None:
    """`ssh_agent_auth: true` and no key file: the agent's key logs in to every node; without
    an agent the run says SSH_AUTH_SOCK is not set, with the fix."""
    socket_path = tmp_path / "agent.sock"
    agent = ManagedProcess(["ssh-agent", "-D", "-a", str(socket_path)], name="ssh-agent")
    try:
        wait_until(socket_path.exists, timeout=10, what="the agent's socket")
        subprocess.run(["ssh-add", str(user_key)], env={**os.environ,
                       "SSH_AUTH_SOCK": str(socket_path)}, check=True, capture_output=True)
        with ssh_hosts(tmp_path / "nodes", 3, [user_key]) as hosts:
            known = write_known_hosts(tmp_path / "known_hosts", hosts)
            config = tmp_path / "rancher-cluster.yml"
            config.write_text(cluster_text(
                [node_entry(h, f"node-{i + 1}") for i, h in enumerate(hosts)], None, known,
                free_port(), free_port(), "ssh_agent_auth: true\n"))
            done = dry_run(config, {**bundle_env, "SSH_AUTH_SOCK": str(socket_path)})
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.count("ports and disk ok") == 3
            without = subprocess.run(corral_argv("up", "--config", str(config), "--dry-run"),
                                     capture_output=True, text=True, timeout=120, check=False,
                                     env={**{k: v for k, v in os.environ.items()
                                             if k != "SSH_AUTH_SOCK"}, **bundle_env})
            assert without.returncode == 1
            assert "ssh_agent_auth is on for node [node-1], but SSH_AUTH_SOCK is not set" in (
                without.stdout)
    finally:
        agent.stop()


def simple_index(directory: Path, wheels: list[Path]) -> Path:
    """A PEP 503 package index of `wheels` (what a private registry such as devpi serves)."""
    files = directory / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[str]] = {}
    for wheel in wheels:
        shutil.copy2(wheel, files / wheel.name)
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel.name)
    for name, names in projects.items():
        page = directory / "simple" / name / "index.html"
        page.parent.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{n}">{n}</a>\n' for n in names)
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return directory


@pytest.mark.slow
def test_nodes_install_corral_from_the_private_registry_instead_of_shipped_wheels(
    tmp_path: Path, bundle_env: dict[str, str], user_key: Path
) -> None:
    """Air gap: with `private_registries`, only pip's wheel and etcd are shipped; the node's
    pip takes corral and every package from that index (its log shows them); the node
    serves through the load balancer; `corral remove` leaves it empty."""
    bundle = load_bundle(Path(bundle_env["CORRAL_BUNDLE"]))
    wheels = [bundle.directory / f for f in bundle.files
              if f.endswith(".whl") and f != bundle.pip_wheel]
    index = simple_index(tmp_path / "registry", wheels)
    port = free_port()
    registry = ManagedProcess(["python3", "-m", "http.server", "--bind", "127.0.0.1",
                               str(port), "--directory", str(index)], name="registry")
    try:
        wait_port(port)
        with ssh_hosts(tmp_path / "nodes", 1, [user_key]) as hosts:
            cluster = SshCluster(tmp_path, 9, free_port(), free_port(), hosts=hosts, env={})
            known = write_known_hosts(tmp_path / "known_hosts", hosts)
            top = (f"private_registries:\n  - url: http://127.0.0.1:{port}/simple/\n"
                   "    is_default: true\n")
            cluster.config.write_text(cluster_text([node_entry(hosts[0], "node-1", ALL_ROLES)],
                                                   user_key, known, cluster.https_port,
                                                   cluster.http_port, top))
            try:
                done = up_or_fail(cluster)
                assert "from the private registry" in done.stdout
                shipped = hosts[0].run("ls /opt/corral/current/wheels").stdout.split()
                assert shipped == [Path(bundle.pip_wheel).name]
                served = registry.output()
                for project in ("corral", "pydantic", "grpcio", "asyncssh"):
                    assert f"GET /simple/{project}/ HTTP" in served, served[-2000:]
                assert "GET /files/corral-0.1.0-py3-none-any.whl" in served
                assert cluster.node_status() == {"node-1": ("Ready", "controlplane,etcd,worker")}
            finally:
                cluster.remove()
            assert installed_nothing(hosts) == {hosts[0].address: ""}
    finally:
        registry.stop()
