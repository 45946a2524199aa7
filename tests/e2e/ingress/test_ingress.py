"""`corral ingress` with test backends: forwarded-header trust, no redirect, WebSocket, /healthz
ejection, the annotations' read timeout, reload, and --check."""

from __future__ import annotations

import asyncio
import subprocess
import time

import httpx
from websockets.asyncio.client import connect

from corral.config.ingress import IngressConfig
from tests.e2e.ingress.conftest import StartBackends, StartIngress
from tests.e2e.ingress.harness import (
    FQDN,
    TRUSTED_PEER,
    UNTRUSTED_PEER,
    curl_echo,
    desired_cluster,
    ingress_config,
)
from tests.support.net import wait_until
from tests.support.procs import corral_argv

LB_HEADERS = [
    "-H", "X-Forwarded-Proto: https",
    "-H", "X-Forwarded-Port: 443",
    "-H", "X-Forwarded-For: 203.0.113.9",
]  # fmt: skip


def test_trusted_peer_keeps_the_load_balancers_headers(
    backends: StartBackends, ingresses: StartIngress
) -> None:
    """From a trusted proxy, X-Forwarded-Proto/-Port arrive as it set them; For gets the peer."""
    (backend,) = backends(1)
    ingress = ingresses(ingress_config([backend.address]))
    echo = curl_echo(f"{ingress.url}/echo", *LB_HEADERS, source=TRUSTED_PEER)
    assert echo.status == 200
    assert echo.values("x-forwarded-proto") == ["https"]
    assert echo.values("x-forwarded-port") == ["443"]
    assert echo.values("x-forwarded-for") == [f"203.0.113.9, {TRUSTED_PEER}"]
    assert echo.values("host") == [FQDN]


def test_untrusted_peer_gets_them_replaced(
    backends: StartBackends, ingresses: StartIngress
) -> None:
    """From any other address the ingress states what it saw: http and its own port."""
    (backend,) = backends(1)
    ingress = ingresses(ingress_config([backend.address]))
    echo = curl_echo(f"{ingress.url}/echo", *LB_HEADERS, source=UNTRUSTED_PEER)
    assert echo.values("x-forwarded-proto") == ["http"]
    assert echo.values("x-forwarded-port") == [str(ingress.port)]
    assert echo.values("x-forwarded-for") == [f"203.0.113.9, {UNTRUSTED_PEER}"]


def test_trusted_peer_without_headers_gets_the_listeners(
    backends: StartBackends, ingresses: StartIngress
) -> None:
    """A trusted proxy that sets nothing gets the listener's scheme and port, like anyone."""
    (backend,) = backends(1)
    ingress = ingresses(ingress_config([backend.address]))
    echo = curl_echo(f"{ingress.url}/echo", source=TRUSTED_PEER)
    assert echo.values("x-forwarded-proto") == ["http"]
    assert echo.values("x-forwarded-port") == [str(ingress.port)]
    assert echo.values("x-forwarded-for") == [TRUSTED_PEER]


def test_no_trusted_proxies_means_nobody_is_trusted(
    backends: StartBackends, ingresses: StartIngress
) -> None:
    """With trusted_proxies empty even the load balancer's address gets Proto/Port replaced."""
    (backend,) = backends(1)
    ingress = ingresses(ingress_config([backend.address], trusted_proxies=()))
    echo = curl_echo(f"{ingress.url}/echo", *LB_HEADERS, source=TRUSTED_PEER)
    assert echo.values("x-forwarded-proto") == ["http"]


def test_plain_http_is_never_redirected(backends: StartBackends, ingresses: StartIngress) -> None:
    """ssl-redirect "false": plain HTTP GET and POST are proxied, not answered with a redirect."""
    (backend,) = backends(1)
    ingress = ingresses(ingress_config([backend.address]))
    with httpx.Client(base_url=ingress.url, headers={"Host": FQDN}, timeout=20) as client:
        get = client.get("/status/200")
        post = client.post("/echo", content=b"x" * 1000)
    assert (get.status_code, get.text) == (200, "status 200\n")
    assert post.status_code == 200 and post.json()["body_length"] == 1000
    assert "location" not in get.headers


def test_websocket_through_the_ingress(backends: StartBackends, ingresses: StartIngress) -> None:
    """A WebSocket upgrade is tunnelled to a server: text and binary messages echo back."""
    (backend,) = backends(1)
    ingress = ingresses(ingress_config([backend.address]))

    async def talk() -> list[str | bytes]:
        url = f"ws://{FQDN}:{ingress.port}/ws"  # Host: the FQDN; the socket: the node
        async with connect(url, host="127.0.0.1", port=ingress.port, open_timeout=20) as ws:
            replies: list[str | bytes] = []
            for message in ("hello", b"\x00\x01binary", "x" * 100_000):
                await ws.send(message)
                replies.append(await asyncio.wait_for(ws.recv(), timeout=20))
            return replies

    assert asyncio.run(talk()) == ["hello", b"\x00\x01binary", "x" * 100_000]


def test_unhealthy_server_is_ejected_and_traffic_continues(
    backends: StartBackends, ingresses: StartIngress
) -> None:
    """A server whose /healthz fails stops getting requests; a killed one costs no request."""
    sick, dead, well = backends(3)
    ingress = ingresses(ingress_config([sick.address, dead.address, well.address]))
    client = httpx.Client(base_url=ingress.url, headers={"Host": FQDN}, timeout=20)

    def served_by() -> str:
        response = client.get("/echo")
        assert response.status_code == 200, response.text
        return str(response.json()["backend"])

    assert {served_by() for _ in range(9)} == {"b1", "b2", "b3"}
    sick.set_health(500)
    wait_until(
        lambda: sick.stats()["health_checks"] > 0 and "b1" not in {served_by() for _ in range(6)},
        timeout=20,
        what="the ingress to stop sending to the server whose /healthz fails",
    )
    requests_before = sick.stats()["requests"]
    dead.kill()
    assert {served_by() for _ in range(12)} == {"b3"}  # each request answered 200
    assert sick.stats()["requests"] == requests_before
    client.close()


def test_annotations_read_timeout_is_applied(
    backends: StartBackends, ingresses: StartIngress
) -> None:
    """proxy-read-timeout bounds the wait for a server: slower answers get 504 in time."""
    (backend,) = backends(1)
    cluster = desired_cluster(read_timeout_s=1.0)
    ingress = ingresses(ingress_config([backend.address], desired=cluster))
    with httpx.Client(base_url=ingress.url, headers={"Host": FQDN}, timeout=30) as client:
        assert client.get("/delay/0.1").status_code == 200
        started = time.monotonic()
        slow = client.get("/delay/6")
        waited = time.monotonic() - started
    assert slow.status_code == 504
    assert 0.5 < waited < 4.0  # 1 s, give or take the engine's coarse clock tick


def test_sighup_reads_new_upstreams(backends: StartBackends, ingresses: StartIngress) -> None:
    """Rewriting the file (a re-run of corral up) and SIGHUP moves traffic to the new servers."""
    old, new = backends(2)
    ingress = ingresses(ingress_config([old.address]))
    assert curl_echo(f"{ingress.url}/echo").backend == "b1"
    data = ingress.config.model_dump(mode="json")
    ingress.rewrite(IngressConfig.model_validate({**data, "upstreams": [new.address]}))
    wait_until(
        lambda: all(curl_echo(f"{ingress.url}/echo").backend == "b2" for _ in range(3)),
        timeout=20,
        what="the reloaded ingress to send to the new server",
    )


def test_check_reports_problems_with_file_and_line(tmp_path: object) -> None:
    """`corral ingress --check` exits 1 and names file:line: key for each problem."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "ingress.yml"
    path.write_text('host: "<FQDN>"\nupstreams: ["10.0.0.11:8080"]\nssl_redirect: true\n')
    done = subprocess.run(
        corral_argv("ingress", "--check", "--config", str(path)),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"{path}:1: host: '<FQDN>' is the template's placeholder" in done.stderr
    assert f"{path}:3: ssl_redirect: must be false" in done.stderr
    assert "2 problem(s)" in done.stderr
