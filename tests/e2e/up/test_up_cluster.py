"""`corral up` on this machine: three nodes and the external corral lb, reached the way Rancher's
HA guide's clients reach them (through the load balancer), then `--dry-run` and a re-run."""

from __future__ import annotations

import base64
import json
import socket
import stat
import time
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.server.test_api_support import SerializedTLSSocket
from tests.e2e.up.harness import FQDN, Cluster

ROLES = "controlplane,etcd,worker"
WRITTEN = ("run/supervisor.json", "pki", "server-tls", "ingress/ingress.yml")


def login(cluster: Cluster) -> str:
    """A session token for admin, through the load balancer."""
    state = json.loads(cluster.state.read_text())
    with cluster.client() as client:
        answer = client.post("/v3-public/localProviders/local?action=login",
                             json={"username": "admin", "password": state["admin"]["password"]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def wss(cluster: Cluster, path: str, token: str, **kwargs: Any) -> ClientConnection:
    """A WebSocket through the load balancer (TLS with SNI localhost)."""
    raw = socket.create_connection(("127.0.0.1", cluster.https_port), timeout=10)
    tls = cluster.ssl_context().wrap_socket(raw, server_hostname=FQDN)
    return connect(f"ws://{FQDN}:{cluster.https_port}{path}",
                   sock=cast(socket.socket, SerializedTLSSocket(tls)), open_timeout=10,
                   additional_headers={"Authorization": f"Bearer {token}"}, **kwargs)


def snapshot(cluster: Cluster) -> dict[str, bytes]:
    """Every file `corral up` writes: outputs beside the cluster file, node specs and files."""
    files: dict[str, bytes] = {}
    for path in cluster.directory.iterdir():
        if path.is_file():
            files[path.name] = path.read_bytes()
    for node_dir in [*(cluster.base / "nodes").iterdir(), cluster.base / "lb"]:
        for written in WRITTEN:
            for path in [node_dir / written, *(node_dir / written).rglob("*")]:
                if path.is_file():
                    files[str(path.relative_to(cluster.base))] = path.read_bytes()
    return files


def service_pids(cluster: Cluster) -> dict[str, int]:
    """node/service → pid, from each supervisor's status file."""
    pids: dict[str, int] = {}
    for node_dir in [*(cluster.base / "nodes").iterdir(), cluster.base / "lb"]:
        status = json.loads((node_dir / "run" / "status.json").read_text())
        for name, entry in status["services"].items():
            pids[f"{node_dir.name}/{name}"] = entry["pid"]
    return pids


def test_up_prints_rke_style_progress_and_the_files_to_back_up(cluster: Cluster) -> None:
    """Phases and nodes in RKE's manner, then the URL, the password and the backup advice;
    the state file and the kubeconfig are 0600."""
    out = cluster.first_output
    for phase in ("etcd member", "corral server", "corral ingress"):
        for node in ("node-1", "node-2", "node-3"):
            assert f"Starting {phase} on node [{node}]" in out, out
    assert "INFO[" in out and "[lb] Starting corral lb" in out
    assert f"URL:             {cluster.url}" in out
    password = json.loads(cluster.state.read_text())["admin"]["password"]
    assert f"Admin password:  {password}" in out
    assert "Back up these files" in out
    for private in (cluster.kubeconfig, cluster.state):
        assert str(private) in out
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    for written in ("rancher-cluster.lb.yml", "rancher-cluster.nginx.conf"):
        assert (cluster.directory / written).is_file()


def test_ping_login_and_api_work_through_the_load_balancer(cluster: Cluster) -> None:
    """/ping, login and the v3 API through corral lb; links carry the lb's https URL."""
    token = login(cluster)
    with cluster.client() as client:
        assert client.get("/ping").text == "pong"
        users = client.get("/v3/users", headers={"Authorization": f"Bearer {token}"})
    assert users.status_code == 200
    assert users.json()["links"]["self"].startswith(f"{cluster.url}/v3/users")


def test_port_80_of_the_load_balancer_redirects_to_https(cluster: Cluster) -> None:
    """The lb's HTTP listener answers 301 to the HTTPS URL (Rancher's example NGINX)."""
    answer = httpx.get(f"http://127.0.0.1:{cluster.http_port}/v3/settings?x=1",
                       headers={"Host": FQDN}, timeout=10)
    assert answer.status_code == 301
    assert answer.headers["location"] == f"{cluster.url}/v3/settings?x=1"


def test_subscribe_and_the_shell_work_through_the_load_balancer(cluster: Cluster) -> None:
    """`/v3/subscribe` streams, and the admin shell runs a command, over wss through the lb."""
    token = login(cluster)
    with wss(cluster, "/v3/subscribe", token) as events:
        with cluster.client() as client:
            client.post("/v3/tokens", json={"description": "subscribe probe"},
                        headers={"Authorization": f"Bearer {token}"})
        message = json.loads(events.recv(timeout=10))
        assert message["name"] in ("resource.change", "ping")
    marker = uuid.uuid4().hex[:8]
    with wss(cluster, "/v3/shell", token, subprotocols=["base64.channel.k8s.io"]) as shell:
        shell.send("0" + base64.b64encode(f"echo hi-{marker}\n".encode()).decode())
        output, frames, deadline = "", list[str](), time.monotonic() + 10
        while f"hi-{marker}\r\n" not in output and time.monotonic() < deadline:
            try:
                frame = str(shell.recv(timeout=10))
            except ConnectionClosed as closed:
                raise AssertionError(f"{closed!r} after frames {frames!r}") from None
            frames.append(frame)
            if frame.startswith("1"):
                output += base64.b64decode(frame[1:]).decode(errors="replace")
        assert f"hi-{marker}" in output


def test_kubectl_lists_three_ready_nodes_with_their_roles(cluster: Cluster) -> None:
    """`kubectl get nodes` through the lb: node-1..3 Ready, ROLES controlplane,etcd,worker."""
    assert cluster.node_status() == {f"node-{i}": ("Ready", ROLES) for i in (1, 2, 3)}


def audit_record(cluster: Cluster, marker: str) -> dict[str, Any]:
    """The audit record (on whichever node served it) of the request with `marker`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for log in cluster.base.glob("nodes/*/rootfs/var/log/auditlog/*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if marker in line:
                    return cast(dict[str, Any], json.loads(line))
        time.sleep(0.1)
    raise AssertionError(f"no audit record of {marker}")


def _header(record: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in record["requestHeader"].items()}
    value = headers[name]
    return ", ".join(value) if isinstance(value, list) else str(value)


def test_forwarded_headers_reach_the_server_as_the_load_balancer_set_them(
    cluster: Cluster,
) -> None:
    """Host, X-Forwarded-Proto/-Port as corral lb set them (the ingress keeps them), the
    client's X-Forwarded-For first; the server answers instead of redirecting to https (which
    would loop)."""
    marker = uuid.uuid4().hex
    with cluster.client() as client:
        answer = client.get(f"/v3/settings/cacerts?probe={marker}",
                            headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 200 and "location" not in answer.headers
    record = audit_record(cluster, marker)
    assert _header(record, "host") == f"{FQDN}:{cluster.https_port}"
    assert _header(record, "x-forwarded-proto") == "https"
    assert _header(record, "x-forwarded-port") == str(cluster.https_port)
    assert _header(record, "x-forwarded-for").startswith("203.0.113.9, 127.0.0.1")


def test_the_ingress_replaces_forwarded_headers_from_anyone_but_the_lb(cluster: Cluster) -> None:
    """A client on another address claiming https at a node's port 80 is redirected by the
    server (the ingress replaced its X-Forwarded-Proto); the same from the lb's is served."""
    stranger = httpx.HTTPTransport(local_address=f"127.0.{cluster.third}.9")
    url = f"http://{cluster.address(1)}/v3/settings/cacerts"
    claims = {"Host": FQDN, "X-Forwarded-Proto": "https"}
    with httpx.Client(transport=stranger, timeout=10) as client:
        assert client.get(url, headers=claims).status_code == 302
    assert httpx.get(url, headers=claims, timeout=10).status_code == 200  # from 127.0.0.1


def test_dry_run_prints_the_plan_and_changes_nothing(cluster: Cluster) -> None:
    """--dry-run lists every service as kept and leaves every file and process alone."""
    before, pids = snapshot(cluster), service_pids(cluster)
    done = cluster.up("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    for node in ("node-1", "node-2", "node-3"):
        assert f"[etcd] node [{node}] keep etcd member (running, healthy)" in done.stdout
    assert "Nothing to change: 10 services" in done.stdout
    assert snapshot(cluster) == before
    assert service_pids(cluster) == pids


def test_a_rerun_changes_nothing_and_says_so(cluster: Cluster) -> None:
    """`corral up` again on the running cluster: no restart, no file rewritten, said so."""
    before, pids = snapshot(cluster), service_pids(cluster)
    done = cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing changed" in done.stdout
    assert "Starting" not in done.stdout and "Updating" not in done.stdout
    assert snapshot(cluster) == before
    assert service_pids(cluster) == pids


def test_outputs_name_this_cluster(cluster: Cluster) -> None:
    """The lb configuration lists the three nodes' port 80; NGINX's does too."""
    lb = (cluster.directory / "rancher-cluster.lb.yml").read_text()
    nginx = (cluster.directory / "rancher-cluster.nginx.conf").read_text()
    for i in (1, 2, 3):
        assert f"- {cluster.address(i)}:80" in lb
        assert f"server {cluster.address(i)}:80;" in nginx
    assert Path(cluster.kubeconfig).read_text().count(cluster.url) == 1
