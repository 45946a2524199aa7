"""Starting the benchmark's subjects: certificate, backend, the two nginx proxies, corral lb."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import trustme

from bench.configs import (
    BACKEND_BODY,
    SERVER_NAME,
    WORKER_CONNECTIONS,
    CertFiles,
    ProxyPorts,
    backend_nginx_conf,
    corral_lb_yaml,
    haproxy_cfg,
    proxy_nginx_conf,
)
from bench.processes import BenchError, Service
from bench.report import TargetFigures
from corral._native import PURE_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]


class PortPicker:
    """Free TCP ports on 127.0.0.1, never the same one twice in a run."""

    def __init__(self) -> None:
        self._given: set[int] = set()

    def __call__(self) -> int:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port


@dataclass
class Target:
    """One thing wrk measures: where to send requests and the process behind it."""

    figures: TargetFigures
    url: str
    service: Service  # the proxy, or the backend itself for backend-direct
    https_port: int | None  # proxies only: where the idle TLS connections go
    worker_pid: int = 0  # the process serving the requests; known once a request was answered


def make_certificate(directory: Path) -> CertFiles:
    """One server certificate (trustme, ECDSA P-256) for the FQDN, localhost and 127.0.0.1."""
    ca = trustme.CA()
    leaf = ca.issue_cert(SERVER_NAME, "localhost", "127.0.0.1")
    files = CertFiles(directory / "fullchain.pem", directory / "privkey.pem", directory / "ca.pem")
    files.chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    files.key.write_bytes(leaf.private_key_pem.bytes())
    files.combined.write_bytes(files.chain.read_bytes() + files.key.read_bytes())
    files.ca.write_bytes(ca.cert_pem.bytes())
    return files


def client_context(certs: CertFiles) -> ssl.SSLContext:
    """A verifying client context that trusts only the benchmark's CA."""
    return ssl.create_default_context(cafile=str(certs.ca))


def start_nginx(name: str, directory: Path, conf: str, cpu: int | None) -> Service:
    """nginx in the foreground (`daemon off;`); config, pid, logs and temp in `directory`."""
    directory.mkdir(parents=True)
    conf_path = directory / "nginx.conf"
    conf_path.write_text(conf)
    argv = ["nginx", "-p", str(directory), "-c", str(conf_path), "-e", str(directory / "error.log")]
    return Service(name, argv, directory / "stdout.log", cpu)


def start_backend(work: Path, port: int, cpu: int | None) -> Service:
    """The one backend every target ends at."""
    directory = work / "backend"
    return start_nginx("backend (nginx)", directory, backend_nginx_conf(directory, port), cpu)


def start_nginx_proxy(
    work: Path,
    ports: ProxyPorts,
    backend_port: int,
    certs: CertFiles,
    cpu: int | None,
    *,
    tuned: bool,
    workers: int = 1,
    prefix: str = "",
    worker_connections: int = WORKER_CONNECTIONS,
) -> Service:
    """nginx with Rancher's example NGINX configuration (`tuned`: plus upstream keep-alive)."""
    name = "nginx-tuned" if tuned else "nginx-rancher-example"
    name = prefix + name + (f"-{workers}w" if workers > 1 else "")
    directory = work / name
    conf = proxy_nginx_conf(
        directory,
        ports,
        backend_port,
        certs,
        tuned=tuned,
        workers=workers,
        worker_connections=worker_connections,
    )
    return start_nginx(name, directory, conf, cpu)


def start_corral_lb(
    work: Path,
    ports: ProxyPorts,
    backend_port: int,
    certs: CertFiles,
    cpu: int | None,
    workers: int = 1,
    *,
    name: str = "corral-lb",
    worker_connections: int = WORKER_CONNECTIONS,
    pure_python: bool = False,
) -> Service:
    """`corral lb --config` with the equivalent of Rancher's example NGINX configuration
    (`pure_python`: with CORRAL_PURE_PYTHON=1, the hot path not compiled)."""
    directory = work / (name + (f"-{workers}w" if workers > 1 else ""))
    directory.mkdir(parents=True)
    config = directory / "lb.yml"
    config.write_text(
        corral_lb_yaml(
            ports, backend_port, certs, workers, worker_connections=worker_connections
        )
    )
    argv = [sys.executable, "-m", "corral.cli.main", "lb", "--config", str(config)]
    env = {**os.environ, PURE_ENV: "1"} if pure_python else None
    return Service("corral lb", argv, directory / "output.log", cpu, env=env)


def start_haproxy(
    work: Path,
    ports: ProxyPorts,
    backend_port: int,
    certs: CertFiles,
    cpu: int | None,
    *,
    threads: int = 1,
    name: str = "haproxy",
    maxconn: int = WORKER_CONNECTIONS,
) -> Service:
    """HAProxy in the foreground (`-db`: one process, its `threads` threads serve)."""
    directory = work / (name + (f"-{threads}w" if threads > 1 else ""))
    directory.mkdir(parents=True)
    config = directory / "haproxy.cfg"
    config.write_text(
        haproxy_cfg(directory, ports, backend_port, certs, threads=threads, maxconn=maxconn)
    )
    argv = ["haproxy", "-db", "-f", str(config)]
    return Service(name, argv, directory / "output.log", cpu, forks_worker=False)


def probe(target: Target, context: ssl.SSLContext) -> str:
    """GET / once: fail unless it answers 200 with the backend's body; returns the TLS in use."""
    host, _, port = target.url.split("://", 1)[1].rstrip("/").partition(":")
    connection: http.client.HTTPConnection
    if target.url.startswith("https://"):
        connection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": SERVER_NAME})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        sock = connection.sock
        tls = "plain HTTP"
        if isinstance(sock, ssl.SSLSocket) and (cipher := sock.cipher()):
            tls = f"{sock.version()} {cipher[0]}"
    except OSError as exc:
        raise BenchError(f"{target.figures.name}: GET {target.url} failed: {exc}") from exc
    finally:
        connection.close()
    if response.status != 200 or body != BACKEND_BODY:
        raise BenchError(
            f"{target.figures.name}: GET {target.url} answered {response.status} {body[:200]!r}, "
            f"expected 200 {BACKEND_BODY!r}"
        )
    return tls
