"""Virtual-server choice, redirects and endpoint balancing (no sockets)."""

from __future__ import annotations

from corral.config.lb import Server, Upstream
from corral.proxy.routing import Router, build_route
from corral.proxy.upstream import UpstreamPool


def pool(balance: str = "round_robin", n: int = 3) -> UpstreamPool:
    config = Upstream(servers=[f"127.0.0.1:{9000 + i}" for i in range(n)], balance=balance)  # type: ignore[arg-type]
    return UpstreamPool("rancher", config, lambda: 0.0)


def test_redirect_location_uses_server_name_never_host() -> None:
    """$server_name is the configured FQDN; $request_uri is path and query as received."""
    server = Server(
        listen=80, server_name="rancher.example.com", redirect="https://$server_name$request_uri"
    )
    route = build_route(server, {})
    assert route.redirect_location(b"/a/b?c=d") == b"https://rancher.example.com/a/b?c=d"


def test_redirect_without_request_uri_is_fixed() -> None:
    """A template without $request_uri always sends the same Location."""
    server = Server(listen=80, server_name="a.example", redirect="https://$server_name/")
    assert build_route(server, {}).redirect_location(b"/x") == b"https://a.example/"


def test_router_picks_by_host_and_defaults_to_first() -> None:
    """Host (case and port ignored) selects the server block; unknown hosts get the first."""
    pools = {"rancher": pool()}
    first = build_route(Server(listen=443, server_name="a.example", proxy_pass="rancher"), pools)
    second = build_route(Server(listen=443, server_name=["b.example"], proxy_pass="rancher"), pools)
    router = Router([first, second])
    assert router.route(b"B.Example:443") is second
    assert router.route(b"unknown.example") is first
    assert router.route(None) is first


def test_round_robin_cycles_over_available_endpoints() -> None:
    """Round robin visits each endpoint in turn and skips ejected ones."""
    upstream = pool()
    picks = [upstream.choose(0.0) for _ in range(6)]
    assert [p.port for p in picks if p] == [9000, 9001, 9002] * 2
    upstream.endpoints[1].mark(False)
    picks = [upstream.choose(0.0) for _ in range(4)]
    assert {p.port for p in picks if p} == {9000, 9002}


def test_choose_excludes_tried_endpoints_and_reports_none() -> None:
    """Retries never revisit an endpoint; when all are tried there is none."""
    upstream = pool(n=2)
    first = upstream.choose(0.0)
    assert first is not None
    second = upstream.choose(0.0, (first,))
    assert second is not None and second is not first
    assert upstream.choose(0.0, (first, second)) is None


def test_least_conn_prefers_the_least_busy() -> None:
    """least_conn picks the endpoint with the fewest requests in flight."""
    upstream = pool("least_conn")
    upstream.endpoints[0].active = 5
    upstream.endpoints[1].active = 1
    upstream.endpoints[2].active = 3
    assert all(upstream.choose(0.0) is upstream.endpoints[1] for _ in range(5))


def test_passive_ejection_and_fail_timeout() -> None:
    """max_fails connect failures eject an endpoint until fail_timeout passes."""
    now = [100.0]
    config = Upstream(servers=["127.0.0.1:1"], max_fails=2, fail_timeout=10)
    upstream = UpstreamPool("u", config, lambda: now[0])
    endpoint = upstream.endpoints[0]
    endpoint.note_connect_failure(2, 10, active_checks=False)
    assert endpoint.available(now[0])
    endpoint.note_connect_failure(2, 10, active_checks=False)
    assert not endpoint.available(now[0])
    assert endpoint.available(now[0] + 10.5)


def test_ejected_endpoints_are_skipped_while_another_is_available() -> None:
    """An ejected endpoint gets no request while another one is available."""
    upstream = pool(n=2)
    sick, well = upstream.endpoints
    sick.mark(False)
    assert [upstream.choose(0.0) for _ in range(4)] == [well] * 4
    assert upstream.choose(0.0, exclude=(well,)) is None  # tried: no retry on the sick one


def test_with_every_endpoint_down_requests_go_to_all_of_them() -> None:
    """Panic routing: every endpoint down → round robin over all of them, the tried ones
    excluded; once one is up again, only it."""
    upstream = pool(n=3)
    for endpoint in upstream.endpoints:
        endpoint.mark(False)
    assert not upstream.any_available(0.0)
    assert {upstream.choose(0.0) for _ in range(3)} == set(upstream.endpoints)
    first, second, third = upstream.endpoints
    assert upstream.choose(0.0, exclude=(first, second)) is third
    assert upstream.choose(0.0, exclude=(first, second, third)) is None
    second.mark(True)
    assert [upstream.choose(0.0) for _ in range(3)] == [second] * 3


def test_active_checks_hold_an_ejected_endpoint_down() -> None:
    """With active checks, a passively ejected endpoint waits for the checker's verdict."""
    upstream = pool(n=1)
    endpoint = upstream.endpoints[0]
    endpoint.note_connect_failure(1, 10, active_checks=True)
    assert not endpoint.available(1e9)
    endpoint.mark(True)
    assert endpoint.available(0.0)


class _Conn:
    def __init__(self) -> None:
        self.idle_since = 0.0
        self.pooled = False
        self.closed = False

    def is_usable(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


def test_pooled_connections_expire_after_keepalive_timeout() -> None:
    """An idle pooled connection older than keepalive_timeout is closed, not reused."""
    now = [0.0]
    config = Upstream(servers=["127.0.0.1:1"], keepalive_timeout=60)
    endpoint = UpstreamPool("u", config, lambda: now[0]).endpoints[0]
    old, fresh = _Conn(), _Conn()
    endpoint.give_back(old)
    now[0] = 50.0
    endpoint.give_back(fresh)
    now[0] = 70.0
    endpoint.close_stale()
    assert old.closed and not fresh.closed
    assert endpoint.take_idle() is fresh
    endpoint.give_back(fresh)
    now[0] = 200.0
    assert endpoint.take_idle() is None
    assert fresh.closed
