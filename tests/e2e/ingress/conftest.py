"""Fixtures for the `corral ingress` end-to-end tests: test backends and ingress processes.

`backends(n)` starts backends (tests/e2e/lb/backend.py); `start_ingress(config)` runs
`corral ingress` on a configuration built by `harness.ingress_config`. Everything started is
stopped after the test; the ingress's output is printed (pytest shows it when a test fails).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.config.ingress import IngressConfig
from tests.e2e.ingress.harness import IngressProcess, start_ingress
from tests.e2e.lb.harness import Backend, start_backends

StartBackends = Callable[[int], list[Backend]]
StartIngress = Callable[[IngressConfig], IngressProcess]


@pytest.fixture
def backends() -> Iterator[StartBackends]:
    """Factory: `backends(3)` starts three backend processes."""
    started: list[Backend] = []

    def start(count: int) -> list[Backend]:
        new = start_backends([f"b{len(started) + i + 1}" for i in range(count)])
        started.extend(new)
        return new

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def ingresses(tmp_path: Path) -> Iterator[StartIngress]:
    """Factory: `ingresses(config)` runs `corral ingress --config` until it listens."""
    started: list[IngressProcess] = []

    def start(config: IngressConfig) -> IngressProcess:
        ingress = start_ingress(tmp_path / f"ingress{len(started)}", config)
        started.append(ingress)
        return ingress

    yield start
    for ingress in started:
        ingress.stop()
        print(f"--- corral ingress output ({ingress.config_path}) ---\n{ingress.output()}")
