"""Fixtures for `corral server` end-to-end tests (shared with the API tests in this directory).

* `start_corral_server(*args, env=..., ...)` — factory: a real `corral server` process on free
  127.0.0.1 ports with its own data directory, CORRAL_BOOTSTRAP_PASSWORD set, waited on until
  `/ping` answers; every server it started is stopped after the test.
* `corral_server` — one such server for a test; `shared_corral_server` — one per module (for
  tests that only read), started with `--server-url https://corral.test:9443`.
* `rancher_example_nginx(server)` — factory: real NGINX running Rancher's example NGINX
  configuration (from Rancher's single-node guide) in front of `server` (see
  core_harness.rancher_example_nginx_config).
* `corral_lb(server)` — factory: `corral lb` with the same shape (TLS server, port-80 redirect,
  plus a plain-HTTP proxy) in front of `server` (see core_harness.corral_lb_config).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.server.core_harness import (
    CorralLb,
    CorralServer,
    Nginx,
    process_output,
    start_corral_lb,
    start_nginx,
    start_server,
)

SHARED_SERVER_URL = "https://corral.test:9443"

StartServer = Callable[..., CorralServer]
StartNginx = Callable[[CorralServer], Nginx]
StartLb = Callable[[CorralServer], CorralLb]


def _report(server: CorralServer) -> None:
    # printed in teardown: pytest shows it only when the test failed
    print(f"--- corral server output (ports {server.http_port}/{server.https_port}) ---")
    print(server.output())


@pytest.fixture
def start_corral_server(tmp_path: Path) -> Iterator[StartServer]:
    """Factory starting `corral server` processes; all are stopped after the test."""
    started: list[CorralServer] = []

    def start(*args: str, **kwargs: object) -> CorralServer:
        base = tmp_path / f"server{len(started)}"
        server = start_server(base, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        _report(server)


@pytest.fixture
def corral_server(start_corral_server: StartServer) -> CorralServer:
    """A fresh `corral server` (generated CA, embedded store) for one test."""
    return start_corral_server()


@pytest.fixture(scope="module")
def shared_corral_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    """One `corral server` for a whole module, with --server-url https://corral.test:9443."""
    base = tmp_path_factory.mktemp("shared-server")
    server = start_server(base, "--server-url", SHARED_SERVER_URL)
    yield server
    server.stop()
    _report(server)


@pytest.fixture
def rancher_example_nginx(tmp_path: Path) -> Iterator[StartNginx]:
    """Factory: NGINX with Rancher's example NGINX configuration in front of a corral server."""
    started: list[Nginx] = []

    def start(server: CorralServer) -> Nginx:
        nginx = start_nginx(tmp_path / f"nginx{len(started)}", server.http_port)
        started.append(nginx)
        return nginx

    yield start
    for nginx in started:
        nginx.stop()
        print(f"--- nginx output ---\n{process_output(nginx.proc)}")


@pytest.fixture
def corral_lb(tmp_path: Path) -> Iterator[StartLb]:
    """Factory: `corral lb` in front of a corral server."""
    started: list[CorralLb] = []

    def start(server: CorralServer) -> CorralLb:
        lb = start_corral_lb(tmp_path / f"lb{len(started)}", server.http_port)
        started.append(lb)
        return lb

    yield start
    for lb in started:
        lb.stop()
        print(f"--- corral lb output ---\n{process_output(lb.proc)}")
