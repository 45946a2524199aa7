"""Fixtures for doctor's end-to-end tests.

* `pki` — the test CA and server certificates (one set per module);
* `servers` — two `corral server` processes per module publishing the test CA as cacerts (TLS
  terminated at the load balancer, as in Rancher's guides with a private CA);
* `fronts` — factory for corral lb / NGINX processes, each stopped after its test (their
  output printed, which pytest shows for a failed test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.doctor.harness import (
    Front,
    Pki,
    cacerts_tls_dir,
    make_pki,
    start_lb,
    start_nginx,
)
from tests.e2e.server.core_harness import CorralServer, start_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test CA and certificates for localhost (good, another name, misordered chain)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[list[CorralServer]]:
    """Two corral servers publishing the test CA as cacerts."""
    started: list[CorralServer] = []
    try:
        for index in range(2):
            base = tmp_path_factory.mktemp(f"server{index}")
            tls_dir = cacerts_tls_dir(base / "tls-in", pki.ca_pem)
            started.append(start_server(base, tls_dir=tls_dir))
        yield started
    finally:
        for server in started:
            server.stop()
            print(f"--- corral server {server.http_port} ---\n{server.output()}")


class Fronts:
    """Starts load balancers for one test and stops them all after it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Front] = []

    def lb(self, config: dict[str, Any]) -> Front:
        """corral lb with `config`."""
        front = start_lb(self.directory / f"lb{len(self.started)}", config)
        self.started.append(front)
        return front

    def nginx(self, text: str, ports: tuple[int, int]) -> Front:
        """NGINX with `text` listening on `ports` (HTTPS, HTTP)."""
        front = start_nginx(self.directory / f"nginx{len(self.started)}", text, ports)
        self.started.append(front)
        return front


@pytest.fixture
def fronts(tmp_path: Path) -> Iterator[Fronts]:
    """Factory for corral lb and NGINX processes, stopped after the test."""
    made = Fronts(tmp_path)
    yield made
    for front in made.started:
        front.stop()
        print(f"--- {front.config_path} ---\n{front.output()}")


StartFront = Callable[..., Front]
