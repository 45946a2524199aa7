"""Upstream pools: balancing, active health checks (and panic routing when all fail),
passive ejection, retries, 502/504."""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any

import httpx

from tests.e2e.lb.backend import pattern_bytes
from tests.e2e.lb.clients import echo_json, get_request, https_client, read_head, tls_connect
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import UPSTREAM, Certs, lb_config
from tests.support.net import free_port, wait_until

RISE = 2
FAST_CHECKS: dict[str, Any] = {"interval": "200ms", "timeout": "1s", "rise": RISE, "fall": 2}


def echoes(client: httpx.Client, count: int) -> list[dict[str, Any]]:
    """The backends' /echo answers to `count` sequential requests."""
    return [echo_json(client) for _ in range(count)]


def served_by(client: httpx.Client, count: int) -> list[str]:
    """Backend names that answered `count` sequential /echo requests."""
    return [echo["backend"] for echo in echoes(client, count)]


def test_round_robin_spreads_evenly(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Round robin over three backends: 30 requests, 10 each."""
    trio = backends(3)
    lb = start_lb(lb_config(certs, trio, upstream={"balance": "round_robin"}))
    with https_client(certs, lb.port) as client:
        counts = collections.Counter(served_by(client, 30))
    assert counts == {"b1": 10, "b2": 10, "b3": 10}


def test_round_robin_rotates_in_order(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Consecutive requests never land on the same backend twice in a row (3 backends)."""
    trio = backends(3)
    lb = start_lb(lb_config(certs, trio))
    with https_client(certs, lb.port) as client:
        names = served_by(client, 9)
    assert all(a != b for a, b in itertools.pairwise(names)), names
    assert names[:3] * 3 == names


def test_least_conn_prefers_idle_backend(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """least_conn: while one backend holds a long /delay request, new requests go elsewhere."""
    pair = backends(2)
    lb = start_lb(lb_config(certs, pair, upstream={"balance": "least_conn"}))
    with tls_connect(certs, lb.port) as slow:
        slow.sendall(get_request("/delay/60"))
        busy = wait_until(
            lambda: next((b for b in pair if b.stats()["in_flight"] == 1), None),
            timeout=20,
            what="the /delay request to reach a backend",
        )
        idle = next(b for b in pair if b is not busy)
        with https_client(certs, lb.port) as client:
            names = served_by(client, 8)
    assert names == [idle.name] * 8


def test_active_health_check_ejects_and_readmits(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """A backend whose /healthz fails is ejected; it returns only after `rise` good checks."""
    sick, healthy = backends(2)
    checks = {**FAST_CHECKS, "rise": 3, "fall": 2}
    lb = start_lb(lb_config(certs, [sick, healthy], upstream={"health_check": checks}))
    with https_client(certs, lb.port) as client:
        wait_until(lambda: set(served_by(client, 4)) == {"b1", "b2"}, timeout=30)
        sick.set_health(500)
        wait_until(lambda: set(served_by(client, 6)) == {"b2"}, timeout=30, what="b1 to be ejected")
        assert sick.stats()["health_checks"] >= 2
        checks_when_healed = sick.set_health(200)["health_checks"]
        first = wait_until(
            lambda: next((e for e in echoes(client, 4) if e["backend"] == "b1"), None),
            timeout=30,
            what="b1 readmitted",
        )
    assert first is not None
    # the request that reached b1 again came after at least `rise` successful checks
    assert first["health_checks"] >= checks_when_healed + 3


def test_health_checks_reach_every_endpoint(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Active checks GET /healthz on every endpoint, repeatedly."""
    pair = backends(2)
    start_lb(lb_config(certs, pair, upstream={"health_check": {**FAST_CHECKS, "path": "/healthz"}}))
    wait_until(lambda: all(b.stats()["health_checks"] >= 3 for b in pair), timeout=30)


def test_every_endpoint_down_by_its_checks_still_gets_the_requests(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """When the checks mark every endpoint down, requests go to all of them (panic routing):
    checks that fail together (every server asks the same store) never make an outage of
    endpoints that answer; the log says so."""
    pair = backends(2)
    for backend in pair:
        backend.set_health(500)
    lb = start_lb(lb_config(certs, pair, upstream={"health_check": FAST_CHECKS}))
    wait_until(lambda: "every endpoint of" in lb.output(), timeout=30,
               what="the lb to log that every endpoint is down")
    with https_client(certs, lb.port) as client:
        responses = [client.get("/echo") for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.json()["backend"] for r in responses} == {"b1", "b2"}
    assert f"every endpoint of {UPSTREAM!r} is down" in lb.output()


def test_every_endpoint_down_and_unreachable_502_names_upstream(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Every endpoint down by its checks and refusing connections: each is tried once, then
    the lb answers 502 naming the upstream."""
    (only,) = backends(1)
    dead = f"127.0.0.1:{free_port()}"
    only.set_health(500)
    lb = start_lb(lb_config(certs, [only.address, dead], upstream={"health_check": FAST_CHECKS}))
    wait_until(lambda: "every endpoint of" in lb.output(), timeout=30,
               what="the lb to log that every endpoint is down")
    only.stop()
    with https_client(certs, lb.port) as client:
        response = client.get("/echo")
    assert response.status_code == 502, response.text
    assert UPSTREAM in response.text
    assert response.headers["content-type"].startswith("text/plain")


def test_connection_refused_502(certs: Certs, start_lb: StartLb) -> None:
    """An upstream whose only endpoint refuses connections → 502."""
    lb = start_lb(lb_config(certs, [f"127.0.0.1:{free_port()}"]))
    with https_client(certs, lb.port) as client:
        response = client.get("/echo")
    assert response.status_code == 502, response.text


def test_upstream_timeout_504(certs: Certs, backends: StartBackends, start_lb: StartLb) -> None:
    """An upstream silent longer than read_timeout before its response head → 504."""
    (slow,) = backends(1)
    lb = start_lb(lb_config(certs, [slow], server={"read_timeout": "1s"}))
    with https_client(certs, lb.port) as client:
        response = client.get("/delay/20")
        assert response.status_code == 504, response.text
        assert client.get("/echo").status_code == 200  # the lb and the backend carry on


def test_refused_endpoint_retried_on_next(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """With one dead endpoint among live ones, every request still succeeds."""
    live = backends(2)
    dead = f"127.0.0.1:{free_port()}"
    lb = start_lb(lb_config(certs, [dead, *live]))
    with https_client(certs, lb.port) as client:
        statuses = [client.get("/echo").status_code for _ in range(12)]
        post = client.post("/echo", content=b"not idempotent, but never reached the dead one")
    assert statuses == [200] * 12
    assert post.status_code == 200


class Traffic:
    """A thread sending idempotent GETs through the lb until stopped; records every outcome."""

    def __init__(self, certs: Certs, port: int) -> None:
        self.client = https_client(certs, port)
        self.results: list[tuple[int, str]] = []
        self.first_checks: dict[str, int] = {}  # backend → its health-check count at 1st request
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.client.get("/echo")
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))
                continue
            name = ""
            if response.status_code == 200:
                echo = response.json()
                name = echo["backend"]
                self.first_checks.setdefault(name, echo["health_checks"])
            self.results.append((response.status_code, name))

    def served_since(self, index: int) -> collections.Counter[str]:
        return collections.Counter(name for _, name in self.results[index:])

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.client.close()


def test_killed_backend_no_failed_requests_then_readmitted(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Killing a backend mid-traffic fails no idempotent request; restarted, it is readmitted."""
    victim, *others = backends(3)
    lb = start_lb(lb_config(certs, [victim, *others], upstream={"health_check": FAST_CHECKS}))
    with Traffic(certs, lb.port) as traffic:
        wait_until(lambda: len(traffic.served_since(0)) == 3, timeout=30, what="all 3 serving")
        victim.kill()
        mark = len(traffic.results)
        wait_until(
            lambda: sum(traffic.served_since(mark).values()) >= 50, timeout=60, what="traffic"
        )
        traffic.first_checks.pop("b1")
        victim.start()
        victim.wait_ready()
        wait_until(lambda: "b1" in traffic.first_checks, timeout=60, what="b1 readmitted")
    failures = [r for r in traffic.results if r[0] != 200]
    assert not traffic.errors and not failures, (traffic.errors[:5], failures[:5])
    assert len(traffic.results) > 60
    # the restarted process was ejected until `rise` checks passed, so no request came first
    assert traffic.first_checks["b1"] >= RISE


def test_passive_ejection_and_retry_after_fail_timeout(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """Without active checks: a dead endpoint costs no failed request and is retried later."""
    victim, other = backends(2)
    upstream = {"max_fails": 1, "fail_timeout": "1s"}
    lb = start_lb(lb_config(certs, [victim, other], upstream=upstream))
    with Traffic(certs, lb.port) as traffic:
        wait_until(lambda: len(traffic.served_since(0)) == 2, timeout=30, what="both serving")
        victim.kill()
        mark = len(traffic.results)
        wait_until(lambda: len(traffic.results) - mark >= 30, timeout=60, what="traffic")
        victim.start()
        victim.wait_ready()
        mark = len(traffic.results)
        wait_until(lambda: "b1" in traffic.served_since(mark), timeout=60, what="b1 retried")
    failures = [r for r in traffic.results if r[0] != 200]
    assert not traffic.errors and not failures, (traffic.errors[:5], failures[:5])


def test_non_idempotent_request_not_retried_after_reaching_endpoint(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """A POST whose endpoint dies mid-request gets 502 and is not replayed on another endpoint."""
    pair = backends(2)
    lb = start_lb(lb_config(certs, pair))
    head = b"POST /upload HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 2097152\r\n\r\n"
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(head + b"x" * 65536)  # the rest of the body never comes
        victim = wait_until(
            lambda: next((b for b in pair if b.stats()["in_flight"] == 1), None),
            timeout=20,
            what="the POST to reach a backend",
        )
        assert victim is not None
        survivor = next(b for b in pair if b is not victim)
        victim.kill()
        response, _ = read_head(sock)
    assert response.status == 502
    assert "/upload" not in survivor.stats()["paths"]


def test_small_response_broken_after_its_head_is_retried_on_another_endpoint(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """An endpoint that sends the head of a small GET response and dies before its body ends:
    the response was held, so the client gets the whole response from another endpoint."""
    pair = backends(names=["cut", "whole"])
    lb = start_lb(lb_config(certs, pair))
    size = 2000
    with https_client(certs, lb.port) as client:
        answers = [client.get(f"/truncate/{size}?on=cut") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert all(a.content == pattern_bytes(size) for a in answers)
    assert pair[0].stats()["paths"].get(f"/truncate/{size}", 0) >= 1, "never reached 'cut'"


def test_small_response_broken_on_every_endpoint_is_a_502_not_a_short_200(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """When every endpoint breaks a small response after its head, the client gets the lb's
    own 502 (nothing of a broken response reached it), and the connection stays usable."""
    lb = start_lb(lb_config(certs, backends(2)))
    with https_client(certs, lb.port) as client:
        broken = client.get("/truncate/2000")
        after = client.get("/status/200")
    assert broken.status_code == 502, broken.text
    assert after.status_code == 200
