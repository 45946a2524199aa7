"""A real etcd cluster for tests: `etcd` processes with client and peer mutual TLS.

Each member listens on its own loopback address (127.0.<cluster>.<member>) on free ports, with a
server+peer certificate from a CA made with corral.pki; clients use `cluster.client_cert` /
`client_key` / `ca_file` and `cluster.endpoints`. Startup and restart wait on each member's
`/health` (quorum and a leader), never on a sleep.

    with running_etcd_cluster(tmp_path, size=3) as cluster:
        cluster.kill(0)      # kill -9
        cluster.restart(0)   # same data dir, waits for health
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from corral.pki import certificate_pem, create_ca, issue_certificate, private_key_pem
from tests.support.procs import ManagedProcess

if TYPE_CHECKING:
    from corral.store.etcd import EtcdOptions

ETCD_BINARY = "/usr/bin/etcd"
START_TIMEOUT = 30.0
#: etcd's log level in tests (CORRAL_TEST_ETCD_LOG_LEVEL=info shows elections, for debugging).
ETCD_LOG_LEVEL = os.environ.get("CORRAL_TEST_ETCD_LOG_LEVEL", "warn")


def etcd_available() -> bool:
    """True when the etcd server binary is installed."""
    return shutil.which("etcd") is not None or Path(ETCD_BINARY).exists()


def free_port_on(host: str) -> int:
    """A TCP port on `host` (a loopback address) that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdMember:
    """One member: its name, addresses, data dir and (while running) its process."""

    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    cert_file: Path
    key_file: Path
    process: ManagedProcess | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def client_url(self) -> str:
        return f"https://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.host}:{self.peer_port}"

    def alive(self) -> bool:
        """True while the member's process runs."""
        return self.process is not None and self.process.alive()


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


class EtcdCluster:
    """A cluster of `size` etcd members under `base_dir` (not started until `start()`)."""

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        if size < 1:
            raise ValueError("an etcd cluster needs at least one member")
        self.base_dir = base_dir
        self.size = size
        self.token = f"corral-test-{random.randrange(1 << 32):08x}"
        pki = base_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = create_ca("corral test etcd CA")
        self.ca_file = _write_pem(pki / "ca.pem", certificate_pem(ca_cert))
        cert, key = issue_certificate(
            ca_cert, ca_key, common_name="corral-etcd-client", server=False, client=True
        )
        self.client_cert = _write_pem(pki / "client.pem", certificate_pem(cert))
        self.client_key = _write_pem(pki / "client-key.pem", private_key_pem(key))
        third = random.randrange(10, 250)
        self.members: list[EtcdMember] = []
        for index in range(size):
            host = f"127.0.{third}.{index + 1}"
            name = f"m{index}"
            cert, key = issue_certificate(
                ca_cert,
                ca_key,
                common_name=name,
                dns_names=["localhost"],
                ip_addresses=[host],
                server=True,
                client=True,
            )
            self.members.append(
                EtcdMember(
                    name=name,
                    host=host,
                    client_port=free_port_on(host),
                    peer_port=free_port_on(host),
                    data_dir=base_dir / f"{name}.etcd",
                    cert_file=_write_pem(pki / f"{name}.pem", certificate_pem(cert)),
                    key_file=_write_pem(pki / f"{name}-key.pem", private_key_pem(key)),
                )
            )

    # -- what clients use ------------------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every member's client URL, in member order."""
        return tuple(m.client_url for m in self.members)

    def options(self, prefix: str = "", **overrides: float) -> EtcdOptions:
        """EtcdOptions for a client of this cluster (all endpoints, the client cert)."""
        from corral.store.etcd import EtcdOptions

        return EtcdOptions(
            endpoints=self.endpoints,
            cafile=self.ca_file,
            certfile=self.client_cert,
            keyfile=self.client_key,
            prefix=prefix,
            **overrides,
        )

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting the cluster CA and presenting the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    # -- life cycle ------------------------------------------------------------------------------

    def _argv(self, member: EtcdMember) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        return [
            ETCD_BINARY,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self.token}",
            "--client-cert-auth",
            f"--trusted-ca-file={self.ca_file}",
            f"--cert-file={member.cert_file}",
            f"--key-file={member.key_file}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={self.ca_file}",
            f"--peer-cert-file={member.cert_file}",
            f"--peer-key-file={member.key_file}",
            "--logger=zap",
            f"--log-level={ETCD_LOG_LEVEL}",
        ]

    def _spawn(self, member: EtcdMember) -> None:
        member.process = ManagedProcess(self._argv(member), name=f"etcd-{member.name}")

    def start(self) -> None:
        """Start every member and wait until each reports healthy."""
        for member in self.members:
            self._spawn(member)
        for index in range(self.size):
            self.wait_healthy(index)

    def member_health(self, index: int, timeout: float = 1.0) -> bool:
        """True when member `index` answers `/health` with health true (it sees a leader)."""
        member = self.members[index]
        conn = http.client.HTTPSConnection(
            member.host, member.client_port, timeout=timeout, context=self.client_ssl_context()
        )
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            body = json.loads(response.read() or b"{}")
            return response.status == 200 and str(body.get("health")) == "true"
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_healthy(self, index: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until member `index` is healthy; fail with its log if it exits or times out."""
        member = self.members[index]
        deadline = time.monotonic() + timeout
        while not self.member_health(index):
            if member.process is None or not member.process.alive():
                raise RuntimeError(f"etcd member {member.name} exited:\n{self.log(index)}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"etcd member {member.name} not healthy after {timeout}s:\n{self.log(index)}"
                )
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        """kill -9 member `index` (its data dir stays)."""
        member = self.members[index]
        if member.process is not None:
            member.process.kill()
            member.logs.append(member.process.output())
            member.process.stop()
            member.process = None

    def restart(self, index: int, *, wait: bool = True) -> None:
        """Start member `index` again on the same data dir (after `kill`); with `wait`, wait until
        it is healthy (which needs a quorum)."""
        member = self.members[index]
        if member.alive():
            raise RuntimeError(f"etcd member {member.name} is still running")
        self._spawn(member)
        if wait:
            self.wait_healthy(index)

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL if it lingers), one after the other: a
        member stopping while the others are already gone waits for them."""
        for member in self.members:
            if member.process is not None:
                member.logs.append(member.process.output())
                member.process.stop()
                member.process = None

    def log(self, index: int) -> str:
        """Member `index`'s output so far (earlier runs first)."""
        member = self.members[index]
        current = member.process.output() if member.process is not None else ""
        return "".join(member.logs) + current

    def index_of(self, endpoint: str) -> int:
        """The index of the member whose client URL is `endpoint`."""
        return self.endpoints.index(endpoint.rstrip("/"))


@contextlib.contextmanager
def running_etcd_cluster(base_dir: Path, size: int = 3) -> Iterator[EtcdCluster]:
    """A started cluster of `size` members under `base_dir`, stopped on exit."""
    cluster = EtcdCluster(base_dir, size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
