"""`corral lb` with and without its mypyc-compiled hot path: it says which one it runs, its
worker really runs that one, and it proxies the same either way."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from corral import _native
from tests.e2e.lb.clients import https_client
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, LbProcess, lb_config
from tests.support.net import wait_until


@pytest.fixture
def backend(backends: StartBackends) -> Backend:
    return backends(1)[0]


def worker_maps(lb: LbProcess) -> str:
    """The memory map of the lb's (single) worker process."""
    workers = wait_until(
        lambda: psutil.Process(lb.process.pid).children(),
        timeout=20,
        what="the lb's worker process",
    )
    return Path(f"/proc/{workers[0].pid}/maps").read_text()


def proxies_a_request(certs: Certs, lb: LbProcess) -> None:
    """A GET and a POST with a body go through and come back whole."""
    with https_client(certs, lb.port) as client:
        assert client.get("/echo").status_code == 200
        posted = client.post("/upload", content=b"x" * 100_000)
        assert posted.status_code == 200


def test_it_logs_and_runs_the_build_when_it_matches_the_sources(
    certs: Certs, backend: Backend, start_lb: StartLb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the switch the lb logs what `corral._native.check` decides, and its worker
    maps the compiled shared library exactly when that says compiled."""
    monkeypatch.delenv(_native.PURE_ENV, raising=False)
    expected = _native.check()
    lb = start_lb(lb_config(certs, [backend]))
    proxies_a_request(certs, lb)
    assert f"corral lb: {expected.describe()}" in lb.output().splitlines()
    assert (_native.SHARED_LIB in worker_maps(lb)) is expected.compiled


def test_the_switch_makes_it_run_pure_python(
    certs: Certs, backend: Backend, start_lb: StartLb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CORRAL_PURE_PYTHON=1: the lb says so, its worker maps no compiled module, and it
    proxies as usual."""
    monkeypatch.setenv(_native.PURE_ENV, "1")
    lb = start_lb(lb_config(certs, [backend]))
    proxies_a_request(certs, lb)
    assert "corral lb: hot path in pure Python: CORRAL_PURE_PYTHON=1" in lb.output().splitlines()
    assert _native.SHARED_LIB not in worker_maps(lb)
