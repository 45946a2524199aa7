"""Running several `corral server` processes on one real etcd cluster (Rancher's HA guide on one
machine): each server on free 127.0.0.1 ports with its own data directory and audit log, all
given the cluster's endpoints, CA and client certificate and one `--etcd-prefix` per install.

Servers are spawned first and waited on afterwards, so several can start together. The CA a
client trusts is fetched from the server's `/cacerts` (in HA mode no CA file is in the data
directory: the CA lives in etcd).
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.server.core_harness import (
    CorralServer,
    server_argv,
    server_env,
    wait_ready,
)
from tests.support.etcd_cluster import EtcdCluster
from tests.support.net import free_port, wait_until
from tests.support.procs import ManagedProcess

#: The election lease TTL the tests run with (etcd's shortest; its default is 5 s).
ELECTION_TTL = 2
#: A takeover after kill -9 waits for the dead leader's lease: the TTL plus a campaign.
TAKEOVER_SECONDS = ELECTION_TTL + 3.0
FORWARDED = {"X-Forwarded-Proto": "https"}
LEADER_LINE = "corral server: leader ("
PASSWORD_LINE = re.compile(r"corral server: bootstrap password for admin: (\S+) \(shown once")


@dataclass
class HaServer(CorralServer):
    """A `corral server` of an HA install; its trusted CA is the `/cacerts` it publishes."""

    @property
    def ca_path(self) -> Path:
        return self.data_dir.parent / "cacerts-fetched.pem"

    @property
    def audit_path(self) -> Path:
        """This server's own audit log file."""
        return Path(self.env["AUDIT_LOG_PATH"])

    def healthz(self) -> httpx.Response:
        """GET /healthz?verbose over plain HTTP (health paths are never redirected)."""
        return httpx.get(f"{self.http_url}/healthz?verbose", timeout=10)

    def store_endpoint(self) -> str:
        """The etcd endpoint this server's store uses now (from /healthz?verbose)."""
        match = re.search(r"\[[+-]\]store \w+: .*?endpoint=(\S+)", self.healthz().text)
        assert match, self.healthz().text
        return match.group(1)

    def leads(self) -> bool:
        """True when /healthz?verbose says this server is the leader."""
        return "(this server)" in self.healthz().text

    def identity(self) -> str:
        """This server's name in the election (from /healthz?verbose)."""
        match = re.search(r"leader ok: (\S+) \(this server(?: is (\S+)\))?", self.healthz().text)
        assert match, self.healthz().text
        return match.group(2) or match.group(1)

    def alive_and_leads(self) -> bool:
        """True when the process runs and says it leads (False while it cannot answer)."""
        if not self.proc.alive():
            return False
        try:
            return self.leads()
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9 (a crash: no resignation, nothing flushed)."""
        self.proc.kill()


def new_prefix() -> str:
    """An `--etcd-prefix` no other install in the cluster uses."""
    return f"/corral-test-{uuid.uuid4().hex[:8]}"


def etcd_args(cluster: EtcdCluster, prefix: str, *, endpoints: tuple[str, ...] | None = None,
              cafile: Path | None = None, certfile: Path | None = None,
              keyfile: Path | None = None) -> list[str]:
    """The `--etcd-*` flags for `cluster` (any of them replaceable, to test bad ones)."""
    return [
        "--etcd-servers", ",".join(endpoints or cluster.endpoints),
        "--etcd-cafile", str(cafile or cluster.ca_file),
        "--etcd-certfile", str(certfile or cluster.client_cert),
        "--etcd-keyfile", str(keyfile or cluster.client_key),
        "--etcd-prefix", prefix,
    ]


def ha_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the HA servers: short election lease, frequent subscribe pings."""
    env = {
        "CORRAL_ELECTION_TTL": str(ELECTION_TTL),
        "CORRAL_SUBSCRIBE_PING_SECONDS": "1",
        "AUDIT_LEVEL": "1",
    }
    env.update(extra or {})
    return env


def spawn_server(base: Path, cluster: EtcdCluster, prefix: str, *args: str,
                 env: dict[str, str] | None = None) -> HaServer:
    """Start a server of the install `prefix` (not waited on: see `ready`)."""
    base.mkdir(parents=True, exist_ok=True)
    http_port, https_port = free_port(), free_port()
    data_dir, tls_dir = base / "data", base / "tls-in"
    full_env = server_env(base, ha_env(env))
    argv = server_argv(http_port, https_port, data_dir, tls_dir,
                       [*etcd_args(cluster, prefix), *args])
    proc = ManagedProcess(argv, env=full_env, name="corral-server-ha")
    return HaServer(proc, http_port, https_port, data_dir, tls_dir,
                    [*etcd_args(cluster, prefix), *args], full_env)


def ready(server: HaServer) -> HaServer:
    """Wait until the server answers /ping, then keep the CA it publishes for clients."""
    try:
        wait_ready(server)
        response = httpx.get(f"{server.http_url}/cacerts", headers=FORWARDED, timeout=10)
        response.raise_for_status()
        assert "BEGIN CERTIFICATE" in response.text, response.text
        server.ca_path.write_text(response.text)
    except BaseException:
        server.stop()
        raise
    return server


def start_servers(base: Path, cluster: EtcdCluster, prefix: str, count: int, *args: str,
                  env: dict[str, str] | None = None) -> list[HaServer]:
    """`count` servers of one install, started together and all waited on."""
    spawned = [spawn_server(base / f"server{i}", cluster, prefix, *args, env=env)
               for i in range(count)]
    try:
        return [ready(server) for server in spawned]
    except BaseException:
        for server in spawned:
            server.stop()
        raise


def run_to_exit(base: Path, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[
    str
]:
    """Run a server that is expected to refuse to start; its exit code and output."""
    import os

    base.mkdir(parents=True, exist_ok=True)
    argv = server_argv(free_port(), free_port(), base / "data", base / "tls-in", args)
    return subprocess.run(argv, env={**os.environ, **server_env(base, ha_env())},
                          capture_output=True, text=True, timeout=timeout, check=False)


def api_call(server: HaServer, method: str, path: str, token: str | None = None,
             timeout: float = 10, **kwargs: Any) -> httpx.Response:
    """One API request over the server's plain-HTTP port as the load balancer sends it
    (X-Forwarded-Proto: https), optionally with a Bearer token."""
    headers = dict(FORWARDED)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{server.http_url}{path}", headers=headers, timeout=timeout,
                         **kwargs)


def login(server: HaServer, password: str | None = None, **fields: Any) -> str:
    """A fresh admin token from `server`."""
    response = api_call(server, "POST", "/v3-public/localProviders/local?action=login",
                        json={"username": "admin", "password": password or server.admin_password,
                              **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def wait_for_line(server: HaServer, text: str, timeout: float, after: int = 0) -> float:
    """Wait until the server's output holds `text` after character `after`; the monotonic
    time it was seen."""
    wait_until(lambda: text in server.output()[after:], timeout=timeout,
               what=f"{text!r} from the server on port {server.http_port}")
    return time.monotonic()


def leader_of(servers: list[HaServer], timeout: float = TAKEOVER_SECONDS + 5) -> HaServer:
    """The one server that says it leads, once exactly one does and the others name it."""

    def single() -> HaServer | None:
        leading = [s for s in servers if s.alive_and_leads()]
        if len(leading) != 1:
            return None
        name = leading[0].identity()
        others = [s for s in servers if s.proc.alive() and s is not leading[0]]
        return leading[0] if all(f"leader ok: {name} " in s.healthz().text
                                 for s in others) else None

    found = wait_until(single, timeout=timeout, what="exactly one leader, known to all")
    assert found is not None
    return found
