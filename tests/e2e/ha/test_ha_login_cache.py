"""Authentication in an HA install answers from each server's login cache, which follows etcd's
watch: a token made through one server works on another at once, a logout or a disabled user
through server A is refused by server B within a second, and with the quorum lost B stops
vouching for cached logins (it answers 503, as without a cache) instead of serving stale
successes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.ha.conftest import StartInstall
from tests.e2e.ha.harness import HaServer, api_call, login
from tests.e2e.server.test_api_support import unique
from tests.support.etcd_cluster import EtcdCluster
from tests.support.net import wait_until

#: A change through A must be in force on B within this many seconds.
FOLLOW_SECONDS = 1.0
#: After the quorum is lost, no request sent later than this succeeds from the cache: the
#: cache's freshness window (0.5 s) and its heartbeat (0.1 s), with room for a busy machine.
STALE_SECONDS = 1.5
USER_PASSWORD = "password-for-ann-0001"


@pytest.fixture
def pair(start_install: StartInstall) -> list[HaServer]:
    """Two servers of a fresh install."""
    return start_install(2)


def status_on(server: HaServer, token: str) -> int:
    """The status of an authenticated read of the caller's own tokens through `server`."""
    return api_call(server, "GET", "/v3/tokens", token).status_code


def refused_within(server: HaServer, token: str, since: float) -> float:
    """Wait until `server` refuses `token` with 401; seconds from `since` until then."""
    wait_until(lambda: status_on(server, token) == 401, timeout=FOLLOW_SECONDS + 4,
               interval=0.01, what=f"server on port {server.http_port} refusing the token")
    return time.monotonic() - since


def test_a_logout_through_one_server_is_refused_by_another_within_a_second(
    pair: list[HaServer],
) -> None:
    """A token from A works on B at once; after logout through A, B answers 401 within 1 s."""
    a, b = pair
    token = login(a)
    assert status_on(b, token) == 200  # at once: B reads the store for a token it lacks
    wait_until(lambda: status_on(b, token) == 200, timeout=5, what="B accepting the token")
    response = api_call(a, "POST", "/v3/tokens?action=logout", token)
    assert response.status_code == 200, response.text
    logged_out = time.monotonic()
    assert status_on(a, token) == 401
    assert refused_within(b, token, logged_out) <= FOLLOW_SECONDS


def test_a_user_disabled_through_one_server_is_refused_by_another_within_a_second(
    pair: list[HaServer],
) -> None:
    """A user logged in on B and disabled through A: B answers 401 within 1 s, and the user
    cannot log in again."""
    a, b = pair
    admin = login(a)
    username = unique("ann")
    created = api_call(a, "POST", "/v3/users", admin,
                       json={"username": username, "password": USER_PASSWORD})
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    token = login(b, username=username, password=USER_PASSWORD)
    wait_until(lambda: status_on(b, token) == 200, timeout=5, what="B accepting ann")
    response = api_call(a, "PUT", f"/v3/users/{user_id}", admin, json={"enabled": False})
    assert response.status_code == 200, response.text
    disabled = time.monotonic()
    assert status_on(a, token) == 401
    assert refused_within(b, token, disabled) <= FOLLOW_SECONDS
    again = api_call(b, "POST", "/v3-public/localProviders/local?action=login",
                     json={"username": username, "password": USER_PASSWORD})
    assert again.status_code == 401, again.text


def test_without_quorum_cached_logins_stop_answering(
    cluster: EtcdCluster, pair: list[HaServer]
) -> None:
    """Two of three members down: reading a setting that needs a login through B (the token
    and the setting both cached) answers 503 naming the store for every request sent more than
    1.5 s after the loss, not 200 from the caches; with the members back, 200 again."""
    a, b = pair
    token = login(a)
    wait_until(lambda: status_on(b, token) == 200, timeout=5, what="B accepting the token")
    cluster.kill(1)
    cluster.kill(2)
    lost = time.monotonic()

    def read_at(offset: float) -> tuple[float, int, str]:
        time.sleep(max(0.0, lost + offset - time.monotonic()))  # pacing, not a wait
        sent = time.monotonic() - lost
        response = api_call(b, "GET", "/v3/settings/telemetry-opt", token, timeout=30)
        return sent, response.status_code, response.text[:200]

    offsets = [n * 0.25 for n in range(int((STALE_SECONDS + 1.5) / 0.25) + 1)]
    with ThreadPoolExecutor(max_workers=len(offsets)) as pool:
        answers = list(pool.map(read_at, offsets))
    print(answers)
    late = [(sent, status, text) for sent, status, text in answers if sent > STALE_SECONDS]
    assert late, answers
    assert all(status == 503 for _, status, _ in late), late
    assert "etcd" in late[-1][2]
    cluster.restart(1, wait=False)
    cluster.restart(2, wait=False)
    for index in (1, 2):
        cluster.wait_healthy(index)
    wait_until(lambda: api_call(b, "GET", "/v3/settings/telemetry-opt", token).status_code == 200,
               timeout=20, what="B answering again")
