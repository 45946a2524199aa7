"""Fixtures for the `corral lb` end-to-end tests: certificates, backends, the lb process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lb.harness import Backend, Certs, LbProcess, make_certs, start_backends

StartBackends = Callable[..., list[Backend]]
StartLb = Callable[[dict[str, Any]], LbProcess]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """trustme root → intermediate → server certificates for lb.test/localhost/127.0.0.1."""
    return make_certs(tmp_path_factory.mktemp("lb-certs"))


@pytest.fixture
def backends() -> Iterator[StartBackends]:
    """Factory: `backends(3)` or `backends(names=["a"])` starts backend processes."""
    started: list[Backend] = []

    def start(count: int = 1, names: list[str] | None = None) -> list[Backend]:
        chosen = names or [f"b{len(started) + i + 1}" for i in range(count)]
        new = start_backends(chosen)
        started.extend(new)
        return new

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def start_lb(tmp_path: Path) -> Iterator[StartLb]:
    """Factory: `start_lb(config)` runs `corral lb --config` until it listens; stopped after."""
    started: list[LbProcess] = []

    def start(config: dict[str, Any]) -> LbProcess:
        directory = tmp_path / f"lb{len(started)}"
        directory.mkdir()
        lb = LbProcess(config, directory)
        started.append(lb)
        lb.wait_listening()
        return lb

    yield start
    for lb in started:
        lb.stop()
        # printed in teardown: pytest shows it only when the test failed
        print(f"--- corral lb output ({lb.config_path}) ---\n{lb.output()}")
