"""Processes and files for the `corral lb` end-to-end tests: certificates, backends, the lb."""

from __future__ import annotations

import contextlib
import json
import ssl
import sys
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil
import trustme
import yaml

from tests.support.net import free_port, port_open, wait_until
from tests.support.procs import ManagedProcess, corral_argv

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVER_NAME = "lb.test"
OTHER_NAME = "other.test"
UPSTREAM = "app"


@dataclass(frozen=True)
class CertPair:
    """A chain file (leaf first, then the intermediate) and its key file."""

    chain: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    """A root CA (the only thing clients trust), an intermediate, and server certificates."""

    ca_pem: Path
    main: CertPair  # lb.test, localhost, 127.0.0.1
    other: CertPair  # other.test
    wrong_order_chain: Path  # intermediate first, then the main leaf
    leaf_only: Path  # the main leaf without its intermediate

    def client_context(self, alpn: Iterable[str] = ("http/1.1",)) -> ssl.SSLContext:
        """A client SSL context that trusts the test root only."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        context.set_alpn_protocols(list(alpn))
        return context


def make_certs(directory: Path) -> Certs:
    """Issue the test PKI with trustme and write it as PEM files into `directory`."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    main = intermediate.issue_cert(SERVER_NAME, "localhost", "127.0.0.1")
    other = intermediate.issue_cert(OTHER_NAME)

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    main_chain = [blob.bytes() for blob in main.cert_chain_pems]
    other_chain = [blob.bytes() for blob in other.cert_chain_pems]
    return Certs(
        ca_pem=write("ca.pem", root.cert_pem.bytes()),
        main=CertPair(
            write("fullchain.pem", b"".join(main_chain)),
            write("privkey.pem", main.private_key_pem.bytes()),
        ),
        other=CertPair(
            write("other-fullchain.pem", b"".join(other_chain)),
            write("other-privkey.pem", other.private_key_pem.bytes()),
        ),
        wrong_order_chain=write("wrong-order.pem", b"".join(reversed(main_chain))),
        leaf_only=write("leaf-only.pem", main_chain[0]),
    )


class Backend:
    """One test backend process (tests/e2e/lb/backend.py) on a fixed port."""

    def __init__(self, name: str, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Backend:
        argv = [sys.executable, "-m", "tests.e2e.lb.backend"]
        argv += ["--port", str(self.port), "--name", self.name]
        self.process = ManagedProcess(argv, cwd=REPO_ROOT, name=f"backend-{self.name}")
        return self

    def wait_ready(self) -> None:
        process = self.process
        assert process is not None
        wait_until(
            lambda: "ready" in process.output() or not process.alive(),
            timeout=20,
            what=f"backend {self.name} to print ready",
        )
        assert process.alive(), f"backend {self.name} died:\n{process.output()}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill(self) -> None:
        """SIGKILL: the backend vanishes mid-traffic."""
        if self.process is not None:
            self.process.kill()
            self.process.stop()
            self.process = None

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON admin endpoint directly (not through the lb)."""
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def stats(self) -> dict[str, Any]:
        return self.get("/admin/stats")

    def set_health(self, status: int) -> dict[str, Any]:
        """Make /healthz answer `status` from now on; returns the stats at that moment."""
        return self.get(f"/admin/health?status={status}")


def start_backends(names: Iterable[str]) -> list[Backend]:
    """Start backends in parallel and wait until each is ready."""
    backends = [Backend(name).start() for name in names]
    for backend in backends:
        backend.wait_ready()
    return backends


def listen_ports(config: dict[str, Any]) -> list[int]:
    """The ports of every `servers[].listen` in an lb config."""
    ports = []
    for server in config.get("servers", []):
        listen = server["listen"]
        ports.append(int(str(listen).rsplit(":", 1)[-1]))
    return ports


class LbProcess:
    """`corral lb --config F` as a real process."""

    live: ClassVar[set[LbProcess]] = set()  # started and not yet stopped

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.config = config
        self.config_path = directory / "lb.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.ports = listen_ports(config)
        self.process = ManagedProcess(
            corral_argv("lb", "--config", str(self.config_path)), cwd=REPO_ROOT, name="corral-lb"
        )
        LbProcess.live.add(self)

    @property
    def port(self) -> int:
        """The first listener's port (the HTTPS one in `lb_config`)."""
        return self.ports[0]

    def wait_listening(self) -> None:
        process = self.process

        def all_listening() -> bool:
            if not process.alive():
                return True
            return all(port_open(port) for port in self.ports)

        wait_until(all_listening, timeout=30, what=f"corral lb to listen on {self.ports}")
        assert process.alive(), f"corral lb exited:\n{process.output()}"

    def output(self) -> str:
        """Everything the lb printed (stdout and stderr), also after it stopped."""
        return self.process.log_path.read_text(errors="replace")

    def rss(self) -> int:
        """Resident memory of the lb and all its worker processes, in bytes."""
        root = psutil.Process(self.process.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def stop(self) -> None:
        self.process.stop()
        LbProcess.live.discard(self)


def lb_config(
    certs: Certs,
    backends: Iterable[Backend | str],
    *,
    access_log: Path | str = "off",
    upstream: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    redirect: bool = False,
    plain_proxy: bool = False,
    **top: Any,
) -> dict[str, Any]:
    """An lb config: one HTTPS listener proxying to the backends, plus optional extras."""
    servers_list = [b.address if isinstance(b, Backend) else b for b in backends]
    https: dict[str, Any] = {
        "listen": f"127.0.0.1:{free_port()}",
        "server_name": SERVER_NAME,
        "tls": {
            "certificates": [{"cert": str(certs.main.chain), "key": str(certs.main.key)}],
        },
        "proxy_pass": UPSTREAM,
    }
    https.update(server or {})
    servers = [https]
    if redirect:
        servers.append(
            {
                "listen": f"127.0.0.1:{free_port()}",
                "server_name": SERVER_NAME,
                "redirect": "https://$server_name$request_uri",
            }
        )
    if plain_proxy:
        servers.append(
            {
                "listen": f"127.0.0.1:{free_port()}",
                "server_name": SERVER_NAME,
                "proxy_pass": UPSTREAM,
            }
        )
    config: dict[str, Any] = {
        "worker_processes": 1,
        "access_log": str(access_log),
        "upstreams": {UPSTREAM: {"servers": servers_list, **(upstream or {})}},
        "servers": servers,
    }
    config.update(top)
    return config
