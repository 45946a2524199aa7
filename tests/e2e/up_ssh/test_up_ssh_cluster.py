"""`corral up` over SSH: three real OpenSSH hosts, each with its own filesystem, built end to end
and reached as Rancher's HA guide's clients reach them (through the load balancer); then
`--dry-run`, a re-run, a lost node brought back, and `corral remove`."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any, cast

from tests.e2e.up.test_up_cluster import ROLES, login, wss
from tests.e2e.up.test_up_snapshots import new_token, token_descriptions
from tests.e2e.up_ssh.harness import SshCluster, installed_nothing

NODES = ("node-1", "node-2", "node-3")
NODE_FILES = "/etc/corral /var/lib/corral/run/supervisor.json /opt/corral/current/.installed"


def node_files(cluster: SshCluster) -> dict[str, str]:
    """A digest of every file Corral wrote on each host (configuration, spec, release)."""
    digests = {}
    for name in NODES:
        done = cluster.host(name).run(
            f"find {NODE_FILES} -type f | sort | xargs sha256sum")
        digests[name] = hashlib.sha256(done.stdout.encode()).hexdigest()
    return digests


def service_pids(cluster: SshCluster) -> dict[str, int]:
    """node/service → pid, from each supervisor's status file."""
    pids = {}
    for name in NODES:
        status = json.loads(cluster.host(name).read("/var/lib/corral/run/status.json") or "{}")
        for service, entry in status["services"].items():
            pids[f"{name}/{service}"] = entry["pid"]
    return pids


def test_every_node_is_checked_shipped_and_started_with_its_own_progress_lines(
    ssh_cluster: SshCluster,
) -> None:
    """The first run names each node in preflight (login, python), in the bundle phase
    (shipped over SFTP, installed) and in every service phase, then prints the URL."""
    out = ssh_cluster.first_output
    for i, name in enumerate(NODES):
        host = ssh_cluster.hosts[i]
        assert f"[preflight] node [{name}] (root@{host.address}:{host.port}): python 3." in out
        assert f"[bundle] Shipping the bundle to node [{name}]" in out, out
        assert f"corral==0.1.0 installed on node [{name}] in /opt/corral/releases/" in out
        for phase in ("etcd member", "corral server", "corral ingress"):
            assert f"Starting {phase} on node [{name}]" in out
    assert f"URL:             {ssh_cluster.url}" in out


def test_each_host_keeps_corral_in_its_own_linux_directories(ssh_cluster: SshCluster) -> None:
    """On every host: certificates in /etc/corral, the supervisor's files in /var/lib/corral,
    logs in /var/log/corral, and every service running from the release's venv or etcd under
    /opt/corral (what the bundle installed; nothing from this machine's environment)."""
    ca = ssh_cluster.ca_pem()
    for name in NODES:
        host = ssh_cluster.host(name)
        assert host.read("/etc/corral/pki/ca.pem") == ca
        status = json.loads(host.read("/var/lib/corral/run/status.json") or "{}")
        assert {s: e["healthy"] for s, e in status["services"].items()} == {
            "etcd": True, "server": True, "ingress": True}
        for log in ("supervisor", "etcd", "server", "ingress"):
            assert host.read(f"/var/log/corral/{log}.log") is not None, log
        release = host.run("readlink /opt/corral/current").stdout.strip()
        assert release.startswith("/opt/corral/releases/")
        commands = [host.run(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
                    for pid in service_pids(ssh_cluster).values()]
        assert all(c.startswith(release) for c in commands), commands


def test_login_and_the_api_work_through_the_load_balancer(ssh_cluster: SshCluster) -> None:
    """/ping, login and the v3 API through corral lb to the SSH nodes."""
    token = login(ssh_cluster)
    with ssh_cluster.client() as client:
        assert client.get("/ping").text == "pong"
        users = client.get("/v3/users", headers={"Authorization": f"Bearer {token}"})
    assert users.status_code == 200
    assert users.json()["links"]["self"].startswith(f"{ssh_cluster.url}/v3/users")


def test_subscribe_and_the_shell_work_through_the_load_balancer(ssh_cluster: SshCluster) -> None:
    """`/v3/subscribe` streams and the admin shell runs a command on a node, over wss."""
    token = login(ssh_cluster)
    with wss(ssh_cluster, "/v3/subscribe", token) as events:
        with ssh_cluster.client() as client:
            client.post("/v3/tokens", json={"description": "subscribe probe"},
                        headers={"Authorization": f"Bearer {token}"})
        assert json.loads(events.recv(timeout=10))["name"] in ("resource.change", "ping")
    marker = uuid.uuid4().hex[:8]
    with wss(ssh_cluster, "/v3/shell", token, subprotocols=["base64.channel.k8s.io"]) as shell:
        shell.send("0" + base64.b64encode(f"echo hi-{marker}\n".encode()).decode())
        output, deadline = "", time.monotonic() + 10
        while f"hi-{marker}\r\n" not in output and time.monotonic() < deadline:
            frame = str(shell.recv(timeout=10))
            if frame.startswith("1"):
                output += base64.b64decode(frame[1:]).decode(errors="replace")
        assert f"hi-{marker}" in output


def test_kubectl_lists_the_three_ssh_nodes_ready(ssh_cluster: SshCluster) -> None:
    """`kubectl get nodes` through the lb: node-1..3 Ready with every role."""
    assert ssh_cluster.node_status() == {name: ("Ready", ROLES) for name in NODES}


def _audit_record(cluster: SshCluster, marker: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for host in cluster.hosts:
            for line in (host.read("/var/log/auditlog/corral-api-audit.log") or "").splitlines():
                if marker in line:
                    return cast(dict[str, Any], json.loads(line))
        time.sleep(0.2)
    raise AssertionError(f"no audit record of {marker} on any host")


def test_the_ingress_trusts_the_load_balancer_this_machine_runs(ssh_cluster: SshCluster) -> None:
    """The nodes' ingresses keep X-Forwarded-* from this machine's address towards them (the
    lb runs here): the server sees https and the client's address first, and answers."""
    marker = uuid.uuid4().hex
    with ssh_cluster.client() as client:
        answer = client.get(f"/v3/settings/cacerts?probe={marker}",
                            headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 200 and "location" not in answer.headers
    headers = {k.lower(): v for k, v in _audit_record(ssh_cluster, marker)["requestHeader"].items()}
    proto = headers["x-forwarded-proto"]
    assert (proto[0] if isinstance(proto, list) else proto) == "https"
    forwarded = headers["x-forwarded-for"]
    forwarded = ", ".join(forwarded) if isinstance(forwarded, list) else forwarded
    assert forwarded.startswith("203.0.113.9, 127.0.0.1")


def test_dry_run_prints_the_plan_and_changes_nothing_on_any_host(
    ssh_cluster: SshCluster,
) -> None:
    """--dry-run checks the nodes and lists every service as kept; no file on a host
    changes and no service restarts."""
    before, pids = node_files(ssh_cluster), service_pids(ssh_cluster)
    done = ssh_cluster.up("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in NODES:
        assert f"[preflight] node [{name}]" in done.stdout
        assert f"[etcd] node [{name}] keep etcd member (running, healthy)" in done.stdout
    assert "Nothing to change: 10 services" in done.stdout
    assert node_files(ssh_cluster) == before
    assert service_pids(ssh_cluster) == pids


def test_a_rerun_ships_nothing_and_restarts_nothing(ssh_cluster: SshCluster) -> None:
    """`corral up` again: the release is already on every node (nothing shipped), no
    service restarts, and it says nothing changed."""
    pids = service_pids(ssh_cluster)
    done = ssh_cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing changed" in done.stdout
    assert "Shipping" not in done.stdout and "Starting" not in done.stdout
    assert service_pids(ssh_cluster) == pids


def test_a_node_that_lost_every_process_is_started_again(ssh_cluster: SshCluster) -> None:
    """kill -9 of everything on node-2's host; `corral up` starts its supervisor over SSH
    again (its services come back), the other nodes are left alone."""
    others = {k: v for k, v in service_pids(ssh_cluster).items() if not k.startswith("node-2")}
    assert ssh_cluster.kill_node("node-2")
    done = ssh_cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Restarting etcd member on node [node-2]" in done.stdout
    assert "on node [node-1]" not in done.stdout
    assert {k: v for k, v in service_pids(ssh_cluster).items()
            if not k.startswith("node-2")} == others


def test_snapshots_are_in_opt_corral_on_every_host_and_restore_the_cluster(
    ssh_cluster: SshCluster,
) -> None:
    """`corral etcd snapshot-save` puts the snapshot in /opt/corral/etcd-snapshots on every
    host (`sha256sum -c` passes there), and a restore after more writes brings back the
    snapshot's data (the previous data kept beside it); the cluster serves afterwards."""
    earlier, later = f"before-{uuid.uuid4().hex[:8]}", f"after-{uuid.uuid4().hex[:8]}"
    new_token(ssh_cluster, earlier)
    saved = ssh_cluster.run("etcd", "snapshot-save", "--name", "over-ssh", timeout=300)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    for host in ssh_cluster.hosts:
        check = host.run("cd /opt/corral/etcd-snapshots && sha256sum -c over-ssh.sha256")
        assert check.returncode == 0 and "over-ssh: OK" in check.stdout, check.stderr
    new_token(ssh_cluster, later)
    restored = ssh_cluster.run("etcd", "snapshot-restore", "--name", "over-ssh", timeout=300)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    descriptions = token_descriptions(ssh_cluster)
    assert earlier in descriptions and later not in descriptions
    for host in ssh_cluster.hosts:
        assert host.run("test -d /var/lib/corral/etcd.before-restore").returncode == 0


def test_remove_stops_everything_and_empties_every_host(ssh_cluster: SshCluster) -> None:
    """`corral remove` (last in this module): no process of the cluster is left on any host
    or here, Corral's directories on every host are empty, the outputs are deleted."""
    done = ssh_cluster.remove()
    assert done.returncode == 0, done.stdout + done.stderr
    for name in NODES:
        assert f"Deleted Corral's directories on node [{name}]" in done.stdout
    assert all(not h.processes() for h in ssh_cluster.hosts)
    assert installed_nothing(ssh_cluster.hosts) == {h.address: "" for h in ssh_cluster.hosts}
    assert not ssh_cluster.state.exists() and not ssh_cluster.kubeconfig.exists()
