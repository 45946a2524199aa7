"""One measured system for bench/server: `corral server` behind `corral lb`, at one audit level.

Each level gets a fresh server (temporary data directory, bootstrap password from the
environment, audit log in its own temporary directory) and a fresh `corral lb` (Rancher's example
NGINX configuration in corral lb's form, from bench.configs: one worker, no access log, HTTPS
with the bench certificate).
Everything started here is registered on the caller's ExitStack, so it is stopped on exit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import ssl
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.configs import CertFiles, ProxyPorts
from bench.processes import BenchError, Service
from bench.targets import PortPicker, start_corral_lb

READY_LINE = "corral server: listening on"
SERVER_START_TIMEOUT_S = 60.0
AUDIT_FILE_NAME = "corral-api-audit.log"
AUDIT_STATS = re.compile(r"audit-log \w+: level=(\d+)((?: \w+=\d+)*)")
READ_CHUNK = 1 << 20
SERVER_LAUNCHER = [sys.executable, "-m", "corral.cli.main"]


@dataclass(frozen=True)
class Stack:
    """A running server + lb pair: where to send requests and where the audit log goes."""

    level: int
    base_url: str  # https://127.0.0.1:<lb port>, through corral lb
    server: Service
    lb: Service
    audit_dir: Path


@dataclass(frozen=True)
class AuditCount:
    """What the audit directory holds once the server has stopped (and flushed)."""

    files: int
    records: int
    size_bytes: int
    last_record: dict[str, object] | None


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the children started inside the block, then restore."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def new_password() -> str:
    """A bootstrap password for one run (the server wants at least 12 characters)."""
    return secrets.token_urlsafe(18)


def start_stack(
    stack: contextlib.ExitStack,
    work: Path,
    level: int,
    certs: CertFiles,
    password: str,
    cpus: tuple[int | None, int | None],
    launcher: list[str] | None = None,
) -> Stack:
    """Start `corral server` (AUDIT_LEVEL=level) and `corral lb` in front; wait until ready.

    `launcher` replaces `python -m corral.cli.main` in the server's command line: bench/server
    --server-src runs another tree's server this way, bench.server_profile a sampled one."""
    server_cpu, lb_cpu = cpus
    directory = work / f"level{level}"
    audit_dir = directory / "audit"
    audit_dir.mkdir(parents=True)
    port = PortPicker()
    http_port, https_port = port(), port()
    argv = [
        *(launcher or SERVER_LAUNCHER), "server", "--bind-address", "127.0.0.1",
        "--http-listen-port", str(http_port), "--https-listen-port", str(https_port),
        "--data-dir", str(directory / "data"), "--tls-dir", str(directory / "tls-in"),
    ]
    env = {
        "CORRAL_BOOTSTRAP_PASSWORD": password,
        "AUDIT_LEVEL": str(level),
        "AUDIT_LOG_PATH": str(audit_dir / AUDIT_FILE_NAME),
        "AUDIT_LOG_MAXBACKUP": "0",  # keep every rotated file, so every record can be counted
    }
    with environment(env):
        server = Service(f"corral server (AUDIT_LEVEL={level})", argv,
                         directory / "server.log", server_cpu, forks_worker=False)
    stack.callback(server.stop)
    wait_for_line(server, READY_LINE, SERVER_START_TIMEOUT_S)
    lb_ports = ProxyPorts(https=port(), http=port())
    lb = start_corral_lb(directory, lb_ports, http_port, certs, lb_cpu)
    stack.callback(lb.stop)
    lb.wait_listening([lb_ports.https, lb_ports.http])
    return Stack(level, f"https://127.0.0.1:{lb_ports.https}", server, lb, audit_dir)


def cpu_seconds(service: Service) -> float:
    """User + system CPU time the process has used so far, all its threads."""
    times = psutil.Process(service.proc.pid).cpu_times()
    return float(times.user + times.system)


def wait_for_line(service: Service, text: str, timeout: float) -> None:
    """Wait until the service has printed `text`; fail early, with its output, if it died."""
    deadline = time.monotonic() + timeout
    while text not in service.log_path.read_text(errors="replace"):
        if service.proc.poll() is not None:
            raise BenchError(f"{service.name} exited with status {service.proc.returncode} "
                             f"before it was ready; its output:\n{service.output_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{service.name} was not ready within {timeout:.0f}s; "
                             f"its output:\n{service.output_tail()}")
        time.sleep(0.05)


def request(
    base_url: str, context: ssl.SSLContext, method: str, path: str,
    body: dict[str, object] | None = None, token: str | None = None,
) -> tuple[int, str]:
    """One HTTPS request through the lb; returns (status, body text)."""
    host, _, port = base_url.split("://", 1)[1].partition(":")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as exc:
        raise BenchError(f"{method} {base_url}{path} failed: {exc}") from exc
    finally:
        connection.close()


LOGIN_PATH = "/v3-public/localProviders/local?action=login"


def login(base_url: str, context: ssl.SSLContext, password: str) -> str:
    """Log in as admin through the lb; returns the `token-xxxxx:<secret>` bearer token."""
    credentials: dict[str, object] = {"username": "admin", "password": password}
    status, text = request(base_url, context, "POST", LOGIN_PATH, credentials)
    if status != 201:
        raise BenchError(f"login through corral lb answered {status} {text[:300]!r}, expected 201")
    token = json.loads(text).get("token")
    if not isinstance(token, str) or ":" not in token:
        raise BenchError("login through corral lb answered 201 without a token")
    return token


def check_endpoints(base_url: str, context: ssl.SSLContext, token: str) -> None:
    """Fail unless the two measured requests answer as expected before wrk starts."""
    status, text = request(base_url, context, "GET", "/healthz")
    if status != 200 or text.strip() != "ok":
        raise BenchError(f"GET /healthz through corral lb answered {status} {text[:200]!r}")
    status, text = request(base_url, context, "GET", "/v3/settings", token=token)
    if status != 200 or json.loads(text).get("type") != "collection":
        raise BenchError(f"GET /v3/settings with the token answered {status} {text[:200]!r}")


def audit_stats(base_url: str, context: ssl.SSLContext) -> dict[str, int]:
    """The server's own audit counters (written, dropped, errors, …) from /healthz?verbose."""
    status, text = request(base_url, context, "GET", "/healthz?verbose")
    match = AUDIT_STATS.search(text)
    if status != 200 or match is None:
        raise BenchError(f"GET /healthz?verbose answered {status} without audit-log counters: "
                         f"{text[:300]!r}")
    pairs = (item.split("=") for item in match.group(2).split())  # none at level 0 ("(off)")
    return {"level": int(match.group(1)), **{name: int(value) for name, value in pairs}}


def count_audit_records(audit_dir: Path) -> AuditCount:
    """Lines (= records) in every audit file, rotated ones included; the last record parsed."""
    files = sorted(p for p in audit_dir.iterdir() if p.is_file())
    records = size = 0
    for path in files:
        size += path.stat().st_size
        with open(path, "rb") as stream:
            while chunk := stream.read(READ_CHUNK):
                records += chunk.count(b"\n")
    active = audit_dir / AUDIT_FILE_NAME
    return AuditCount(len(files), records, size, _last_record(active))


def _last_record(path: Path) -> dict[str, object] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as stream:
        stream.seek(max(0, path.stat().st_size - 64 * 1024))
        last = stream.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record = json.loads(last)
    except ValueError as exc:
        raise BenchError(f"the last line of {path} is not a JSON record: {last[:200]!r}") from exc
    return record if isinstance(record, dict) else None
