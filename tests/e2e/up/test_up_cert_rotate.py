"""`corral cert rotate` on a running three-node cluster under a stream of requests through the
external load balancer: new certificates (the same CA), then a new CA; not one request fails,
etcd members take their new certificates without a restart where etcd allows it, corral lb
reloads instead of restarting; and `corral up` warns of a certificate close to its end.

The request stream is a client of the kubeconfig: every request opens a new TLS connection
trusting the CA data the kubeconfig holds at that moment (as a client that re-reads its
kubeconfig does), alternating reads and API token writes.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from corral import pki
from corral.install.cert_rotation_roll import served_certificate
from corral.install.cluster_pki import CertRequest, ClusterPki, issue, server_cert_name
from tests.e2e.up.harness import FQDN, Cluster, corral, new_cluster, up_or_fail
from tests.support.etcd_cluster import etcd_available
from tests.support.net import wait_until

NODES = ("node-1", "node-2", "node-3")
#: One stage rolls every node (drain at the lb, restart, healthy, back): about 15 s a stage on
#: a quiet 2-core machine; --rotate-ca has three stages. The bound leaves room for the slow case
#: docs/upgrade.md describes (every drain reaching its 30 s limit: 18 drains).
ROTATE_TIMEOUT_S = 900.0
STEADY_REQUESTS = 20
PACE_S = 0.02  # between requests: a steady stream that leaves the 2 cores to the cluster

pytestmark = pytest.mark.skipif(not etcd_available() or shutil.which("kubectl") is None,
                                reason="needs etcd and kubectl (scripts/setup installs them)")


@dataclass
class Stream:
    """Requests through the lb, one new TLS connection each, trusting the kubeconfig's CA."""

    cluster: Cluster
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.cluster.ca_pem())

    def _once(self, count: int) -> None:
        conn = http.client.HTTPSConnection(FQDN, self.cluster.https_port,
                                           context=self._context(), timeout=10)
        headers = {"Authorization": f"Bearer {self.cluster.token()}",
                   "Accept": "application/json"}
        try:
            if count % 3 == 0:
                conn.request("POST", "/v3/tokens", body=json.dumps(
                    {"description": f"rotate-{count}"}), headers={
                        **headers, "Content-Type": "application/json"})
                wanted = 201
            else:
                conn.request("GET", "/v3/settings/cacerts", headers=headers)
                wanted = 200
            response = conn.getresponse()
            if response.status != wanted:  # who answered (the lb, the ingress or a server)
                raise OSError(f"answered {response.status}: {response.read()[:300]!r}")
        finally:
            conn.close()

    def _loop(self) -> None:
        count = 0
        while not self.stopping.wait(PACE_S):
            count += 1
            try:
                self._once(count)
                self.ok += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.errors.append(f"{datetime.now(UTC):%H:%M:%S.%f} #{count}: "
                                   f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Stream:
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        wait_until(lambda: self.ok >= STEADY_REQUESTS or self.errors, timeout=30,
                   what="the request stream to run")
        return self

    def __exit__(self, *exc: object) -> None:
        before = self.ok
        wait_until(lambda: self.ok >= before + STEADY_REQUESTS or self.errors, timeout=30,
                   what="requests after the rotation")
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three local nodes and the external corral lb, up for the module."""
    built = new_cluster(tmp_path_factory.mktemp("rotate"))
    up_or_fail(built)
    try:
        yield built
    finally:
        built.remove()


def state(cluster: Cluster) -> dict[str, Any]:
    """The state file."""
    return dict(json.loads(cluster.state.read_text()))


def cluster_pki(cluster: Cluster) -> ClusterPki:
    """The cluster PKI of the state file."""
    return ClusterPki.from_json(state(cluster)["pki"])


def pids(cluster: Cluster) -> dict[str, int]:
    """node/service → pid, from every supervisor's status file (and the lb's)."""
    found = {}
    for name in [*NODES, "lb"]:
        directory = cluster.base / "lb" if name == "lb" else cluster.node_dir(name)
        status = json.loads((directory / "run" / "status.json").read_text())
        for service, entry in status["services"].items():
            found[f"{name}/{service}"] = int(entry["pid"])
    return found


def etcd_serves(cluster: Cluster, index: int) -> bytes:
    """The certificate node-<index>'s etcd member presents on a new handshake (DER)."""
    pki_dir = cluster.node_dir(f"node-{index}") / "pki"
    return served_certificate(f"https://{cluster.address(index)}:2379",
                              str(pki_dir / "ca.pem"), str(pki_dir / "etcd-client.pem"),
                              str(pki_dir / "etcd-client-key.pem"))


def etcd_health(cluster: Cluster, certfile: Path, keyfile: Path) -> str:
    """GET /health of node-1's etcd member with this client certificate (its answer)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(str(certfile), str(keyfile))
    with socket.create_connection((cluster.address(1), 2379), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    return answer.decode(errors="replace")


def lb_serves(cluster: Cluster) -> bytes:
    """The certificate corral lb presents for the FQDN (DER)."""
    return served_certificate(f"https://127.0.0.1:{cluster.https_port}", server_name=FQDN)


def der(pem: str) -> bytes:
    """DER of the first certificate of `pem`."""
    return ssl.PEM_cert_to_DER_cert(pki.certificate_pem(
        pki.parse_certificates(pem, "cert")[0]).decode())


def rotate(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`corral cert rotate --config <file> [args]`, to its end. Its output and what the lb's
    and the ingresses' logs say of drains and errors are printed (pytest shows them when the
    test fails): a slow or failing rotation is then explained by the run itself."""
    done = subprocess.run(corral("cert", "rotate", "--config", str(cluster.config), *args),
                          capture_output=True, text=True, timeout=ROTATE_TIMEOUT_S, check=False)
    print(done.stdout + done.stderr)
    for log in sorted(cluster.base.glob("**/logs/*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "drain" in line or "error" in line.lower() or " 503" in line]
        print(f"--- {log.relative_to(cluster.base)}: {len(lines)} lines of drains and errors")
        print("\n".join(lines[-40:]))
    return done


@pytest.mark.slow
@pytest.mark.timeout(1000)
def test_new_certificates_roll_out_without_a_failed_request_or_an_etcd_restart(
    cluster: Cluster,
) -> None:
    """Every certificate is new and served (etcd members, lb); the servers restarted, the
    etcd members and corral lb did not (etcd reads its certificate per handshake, the lb
    reloads), the ingresses were left alone; the CA and kubeconfig stay; no request failed;
    `corral up` afterwards has nothing to change."""
    before, old_pids = cluster_pki(cluster), pids(cluster)
    old_kubeconfig = cluster.kubeconfig.read_bytes()
    with Stream(cluster) as stream:
        done = rotate(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stream.errors == [], stream.errors[:5]
    assert "still drain after" not in done.stdout  # every previous worker exited
    after, new_pids = cluster_pki(cluster), pids(cluster)
    assert after.ca == before.ca
    assert all(after.certs[n].cert_pem != before.certs[n].cert_pem for n in before.certs)
    for index in (1, 2, 3):
        assert etcd_serves(cluster, index) == der(after.get(f"etcd:node-{index}").cert_pem)
    assert lb_serves(cluster) == der(after.get("lb").cert_pem)
    for node in NODES:
        assert new_pids[f"{node}/etcd"] == old_pids[f"{node}/etcd"], node
        assert new_pids[f"{node}/ingress"] == old_pids[f"{node}/ingress"], node
        assert new_pids[f"{node}/server"] != old_pids[f"{node}/server"], node
        assert f"node [{node}] has new certificates from the cluster CA (etcd reloaded, " \
               "server restarted)" in done.stdout
    assert new_pids["lb/lb"] == old_pids["lb/lb"]
    assert cluster.kubeconfig.read_bytes() == old_kubeconfig
    again = cluster.up()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing changed" in again.stdout, again.stdout


@pytest.mark.slow
@pytest.mark.timeout(1000)  # three stages of three nodes each (see ROTATE_TIMEOUT_S)
def test_a_new_ca_rolls_out_in_three_stages_and_clients_of_the_kubeconfig_keep_working(
    cluster: Cluster,
) -> None:
    """--rotate-ca: trust both, reissue, retire; no request of a kubeconfig client failed;
    the kubeconfig holds only the new CA, which issued what etcd and the lb serve; an etcd
    client certificate of the old CA is refused now; `corral up` has nothing to change."""
    before = cluster_pki(cluster)
    with Stream(cluster) as stream:
        done = rotate(cluster, "--rotate-ca")
    assert done.returncode == 0, done.stdout + done.stderr
    assert stream.errors == [], stream.errors[:5]
    assert "still drain after" not in done.stdout  # every previous worker exited
    for number, name in enumerate(("trust", "reissue", "retire"), 1):
        assert f"Stage {number} of 3 ({name})" in done.stdout
    after = cluster_pki(cluster)
    new_ca = after.ca.certificate()
    assert after.pending_ca is None and after.trusted() == [new_ca]
    assert new_ca != before.ca.certificate()
    assert pki.parse_certificates(cluster.ca_pem(), "kubeconfig") == [new_ca]
    for index in (1, 2, 3):
        served = etcd_serves(cluster, index)
        assert served == der(after.get(f"etcd:node-{index}").cert_pem)
    assert lb_serves(cluster) == der(after.get("lb").cert_pem)
    assert "Give every client the new CA data" in done.stdout
    old_client = cluster.directory / "old-client"
    old_client.mkdir()
    (old_client / "c.pem").write_text(before.get("etcd-client").cert_pem)
    (old_client / "k.pem").write_text(before.get("etcd-client").key_pem)
    with pytest.raises(OSError):  # ssl.SSLError, or the connection reset
        etcd_health(cluster, old_client / "c.pem", old_client / "k.pem")
    assert '"health":"true"' in etcd_health(
        cluster, cluster.node_dir("node-1") / "pki" / "etcd-client.pem",
        cluster.node_dir("node-1") / "pki" / "etcd-client-key.pem")
    again = cluster.up()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing changed" in again.stdout, again.stdout


def test_up_warns_of_a_certificate_with_less_than_30_days_left(cluster: Cluster) -> None:
    """server:node-2 recorded with 20 days left: `corral up` warns naming it, node-2, its
    expiry and `corral cert rotate`, issues a new one, and the cluster runs on."""
    data = state(cluster)
    current = ClusterPki.from_json(data["pki"])
    name = server_cert_name("node-2")
    recorded = current.get(name).certificate()
    dns, ips = pki.subject_names(recorded)
    request = CertRequest(pki.common_name(recorded), tuple(sorted(dns)), tuple(sorted(ips)))
    short = issue(current.ca, request, days=20)
    data["pki"]["certs"][name] = short.to_json()
    cluster.state.write_text(json.dumps(data))
    end = short.certificate().not_valid_after_utc
    done = cluster.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"[certificates] certificate {name} of node [node-2] "
            f"(its corral server) expires on {end:%Y-%m-%d %H:%M} UTC (in 19 days): this run "
            "issues a new one") in done.stdout, done.stdout
    assert f"(`corral cert rotate --config {cluster.config.name}` renews" in done.stdout
    renewed = cluster_pki(cluster).get(name).certificate()
    assert renewed.not_valid_after_utc - datetime.now(UTC) > timedelta(days=300)
    assert cluster.node_status()["node-2"][0] == "Ready"


def test_rotating_a_cluster_that_was_never_built_names_the_state_file_and_corral_up(
    tmp_path: Path,
) -> None:
    """No state file beside the cluster file: exit 1, the state file named, `corral up` as
    the fix; nothing is created."""
    fresh = new_cluster(tmp_path)
    done = rotate(fresh)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"FATA[0000] [certificates] {fresh.state} does not exist: there is no cluster to "
            "rotate") in done.stdout, done.stdout
    assert f"fix: build it with `corral up --config {fresh.config}`" in done.stdout
    assert not fresh.state.exists() and not fresh.base.exists()
