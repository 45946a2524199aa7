"""Fixtures for the `corral lb` end-to-end tests: certificates, backends, the lb process.

`backends` and `start_lb` are per test; `module_backends` and `module_start_lb` let a test
module share one stack between tests that do not change its state (a failing test still
shows the shared lb's output).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pluggy import Result

from tests.e2e.lb.harness import Backend, Certs, LbProcess, make_certs, start_backends

StartBackends = Callable[..., list[Backend]]
StartLb = Callable[[dict[str, Any]], LbProcess]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport]]:
    """Remember each phase's report on the test item (read by `_shared_lb_output`)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _shared_lb_output(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test fails, print the output of every lb still running (the shared ones)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for lb in LbProcess.live:
            print(f"--- corral lb output ({lb.config_path}) ---\n{lb.output()}")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """trustme root → intermediate → server certificates for lb.test/localhost/127.0.0.1."""
    return make_certs(tmp_path_factory.mktemp("lb-certs"))


def _backend_factory() -> tuple[StartBackends, list[Backend]]:
    started: list[Backend] = []

    def start(count: int = 1, names: list[str] | None = None) -> list[Backend]:
        chosen = names or [f"b{len(started) + i + 1}" for i in range(count)]
        new = start_backends(chosen)
        started.extend(new)
        return new

    return start, started


def _lb_factory(directory: Path) -> tuple[StartLb, list[LbProcess]]:
    started: list[LbProcess] = []

    def start(config: dict[str, Any]) -> LbProcess:
        lb_directory = directory / f"lb{len(started)}"
        lb_directory.mkdir()
        lb = LbProcess(config, lb_directory)
        started.append(lb)
        lb.wait_listening()
        return lb

    return start, started


@pytest.fixture
def backends() -> Iterator[StartBackends]:
    """Factory: `backends(3)` or `backends(names=["a"])` starts backend processes."""
    start, started = _backend_factory()
    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def start_lb(tmp_path: Path) -> Iterator[StartLb]:
    """Factory: `start_lb(config)` runs `corral lb --config` until it listens; stopped after."""
    start, started = _lb_factory(tmp_path)
    yield start
    for lb in started:
        lb.stop()
        # printed in teardown: pytest shows it only when the test failed
        print(f"--- corral lb output ({lb.config_path}) ---\n{lb.output()}")


@pytest.fixture(scope="module")
def module_backends() -> Iterator[StartBackends]:
    """Like `backends`, shared by the tests of one module."""
    start, started = _backend_factory()
    yield start
    for backend in started:
        backend.stop()


@pytest.fixture(scope="module")
def module_start_lb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartLb]:
    """Like `start_lb`, shared by the tests of one module."""
    start, started = _lb_factory(tmp_path_factory.mktemp("shared-lb"))
    yield start
    for lb in started:
        lb.stop()
