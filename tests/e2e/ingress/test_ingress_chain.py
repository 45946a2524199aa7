"""The HA chain Rancher's HA guide draws, with real processes: client → `corral lb` (TLS) →
`corral ingress` → `corral server`. The ingress keeps the load balancer's X-Forwarded-Proto, so
the server sees https and answers instead of redirecting (the redirect loop of an ingress that
overwrites it with http)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.ingress.conftest import StartIngress
from tests.e2e.ingress.harness import ingress_config
from tests.e2e.lb.harness import LbProcess, lb_config, make_certs
from tests.e2e.server.core_harness import CorralServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    """One real `corral server` behind the ingresses of this module."""
    server = start_server(tmp_path_factory.mktemp("chain-server"))
    yield server
    server.stop()
    print(f"--- corral server output ---\n{server.output()}")


def front(tmp_path: Path, ingress_port: int) -> tuple[LbProcess, httpx.Client]:
    """`corral lb` terminating TLS in front of the ingress, and an https client for it."""
    certs = make_certs(tmp_path)
    lb = LbProcess(lb_config(certs, [f"127.0.0.1:{ingress_port}"]), tmp_path)
    lb.wait_listening()
    client = httpx.Client(
        base_url=f"https://127.0.0.1:{lb.port}", verify=certs.client_context(), timeout=20
    )
    return lb, client


def test_https_through_lb_and_ingress_is_not_redirected(
    server: CorralServer, ingresses: StartIngress, tmp_path: Path
) -> None:
    """The lb's address is trusted: the server sees X-Forwarded-Proto https and answers."""
    ingress = ingresses(ingress_config([f"127.0.0.1:{server.http_port}"], ["127.0.0.1"]))
    lb, client = front(tmp_path, ingress.port)
    try:
        api = client.get("/v3/users")
        cacerts = client.get("/v3/settings/cacerts")
    finally:
        client.close()
        lb.stop()
        print(f"--- corral lb output ---\n{lb.output()}")
    assert api.status_code == 401, api.headers  # reached the API (a login is needed), no 302
    assert cacerts.status_code == 200
    assert cacerts.json()["links"]["self"].startswith(f"https://127.0.0.1:{lb.port}/")


def test_without_trust_the_server_redirects_https_clients(
    server: CorralServer, ingresses: StartIngress, tmp_path: Path
) -> None:
    """The loop being prevented: an ingress that replaces Proto with http gets a 302 to https
    for a client that is already on https."""
    ingress = ingresses(ingress_config([f"127.0.0.1:{server.http_port}"], trusted_proxies=()))
    lb, client = front(tmp_path, ingress.port)
    try:
        response = client.get("/v3/users")
    finally:
        client.close()
        lb.stop()
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://")
