"""The systems bench/store measures: `corral server` on its embedded SQLite store, and two
`corral server` processes on one 3-member mutual-TLS etcd cluster (the test suite's cluster
helper, tests/support/etcd_cluster.py, started on 127.0.x.y loopback addresses).

Requests go to each server's plain-HTTP port with `X-Forwarded-Proto: https`, as a
TLS-terminating load balancer sends them, so TLS costs stay out of the store comparison.
Everything started here is registered on the caller's ExitStack, so it is stopped on exit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.processes import BenchError, Service
from bench.server_stack import environment, new_password, wait_for_line
from bench.targets import PortPicker

READY_LINE = "corral server: listening on"
START_TIMEOUT_S = 60.0
LOGIN_PATH = "/v3-public/localProviders/local?action=login"
FORWARDED = {"X-Forwarded-Proto": "https"}
_PORTS = PortPicker()  # one picker for the whole run: no port handed out twice


@dataclass(frozen=True)
class BenchServer:
    """A running server: its process and its plain-HTTP port."""

    service: Service
    http_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def request(server: BenchServer, method: str, path: str, body: dict[str, object] | None = None,
            token: str | None = None) -> tuple[int, str]:
    """One request to the server's HTTP port, forwarded-as-HTTPS; (status, body text)."""
    headers = dict(FORWARDED)
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=15)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as exc:
        raise BenchError(f"{method} {server.base_url}{path} failed: {exc}") from exc
    finally:
        connection.close()


def login(server: BenchServer, password: str) -> str:
    """Log in as admin; the `token-xxxxx:<secret>` bearer token."""
    status, text = request(server, "POST", LOGIN_PATH,
                           {"username": "admin", "password": password})
    if status != 201:
        raise BenchError(f"login answered {status} {text[:300]!r}, expected 201")
    return str(json.loads(text)["token"])


def create_cluster(server: BenchServer, token: str, name: str) -> str:
    """A cluster resource to read back; its id."""
    status, text = request(server, "POST", "/v3/clusters", {"name": name}, token)
    if status != 201:
        raise BenchError(f"POST /v3/clusters answered {status} {text[:300]!r}")
    return str(json.loads(text)["id"])


def start_server(stack: contextlib.ExitStack, directory: Path, name: str, password: str,
                 extra_args: list[str]) -> BenchServer:
    """Start one `corral server` (audit off) and wait until it listens."""
    http_port, https_port = _PORTS(), _PORTS()
    argv = [
        sys.executable, "-m", "corral.cli.main", "server", "--bind-address", "127.0.0.1",
        "--http-listen-port", str(http_port), "--https-listen-port", str(https_port),
        "--data-dir", str(directory / "data"), "--tls-dir", str(directory / "tls-in"),
        *extra_args,
    ]
    env = {"CORRAL_BOOTSTRAP_PASSWORD": password, "AUDIT_LEVEL": "0"}
    directory.mkdir(parents=True, exist_ok=True)
    with environment(env):
        service = Service(name, argv, directory / "server.log", None, forks_worker=False)
    stack.callback(service.stop)
    wait_for_line(service, READY_LINE, START_TIMEOUT_S)
    return BenchServer(service, http_port)


def start_sqlite(stack: contextlib.ExitStack, work: Path) -> tuple[BenchServer, str]:
    """One server on the embedded SQLite store; (server, admin password)."""
    password = new_password()
    return start_server(stack, work / "sqlite", "corral server (sqlite)", password, []), password


def start_etcd_pair(stack: contextlib.ExitStack, work: Path) -> tuple[list[BenchServer], str]:
    """A 3-member etcd cluster and two servers of one install on it; (servers, password)."""
    try:
        from tests.support.etcd_cluster import EtcdCluster, etcd_available
    except ImportError as exc:  # run from the repository root (bench/store does)
        raise BenchError(f"cannot import the etcd cluster helper: {exc}") from exc
    if not etcd_available():
        raise BenchError("etcd is not installed; run scripts/setup")
    cluster = EtcdCluster(work / "etcd", size=3)
    stack.callback(cluster.stop)
    try:
        cluster.start()
    except (RuntimeError, TimeoutError) as exc:
        raise BenchError(f"the etcd cluster did not start: {exc}") from exc
    flags = [
        "--etcd-servers", ",".join(cluster.endpoints),
        "--etcd-cafile", str(cluster.ca_file),
        "--etcd-certfile", str(cluster.client_cert),
        "--etcd-keyfile", str(cluster.client_key),
        "--etcd-prefix", "/corral-bench",
    ]
    password = new_password()
    servers = [start_server(stack, work / f"etcd-server-{name}", f"corral server {name} (etcd)",
                            password, flags) for name in ("A", "B")]
    return servers, password
