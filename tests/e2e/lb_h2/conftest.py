"""Fixtures for the HTTP/2 tests of `corral lb`: the HTTP/1.1 suite's certificates, backends and
lb processes (tests/e2e/lb/conftest.py), plus a backend that sends chunked trailers."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.e2e.lb.conftest import (  # noqa: F401  (fixtures and the report hook, re-exported)
    _shared_lb_output,
    backends,
    certs,
    module_backends,
    module_start_lb,
    pytest_runtest_makereport,
    start_lb,
)
from tests.e2e.lb.harness import REPO_ROOT
from tests.support.net import free_port, wait_port
from tests.support.procs import ManagedProcess


@pytest.fixture(scope="module")
def trailer_backend() -> Iterator[str]:
    """`host:port` of tests/e2e/lb_h2/trailer_backend.py (chunked responses with trailers)."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.e2e.lb_h2.trailer_backend", "--port", str(port)]
    process = ManagedProcess(argv, cwd=REPO_ROOT, name="trailer-backend")
    try:
        wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()
