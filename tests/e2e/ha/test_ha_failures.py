"""An HA install while etcd members fail: kill -9 of the member a server and its watch use loses
no acknowledged write and no event; with one member of three down the API keeps working; with
the quorum lost writes answer 503 naming the store and `/healthz` fails, until it is back."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.ha.conftest import StartInstall
from tests.e2e.ha.harness import HaServer, api_call, leader_of, login
from tests.e2e.server.test_api_support import unique, ws_connect
from tests.support.etcd_cluster import EtcdCluster
from tests.support.net import wait_until

WRITES_BEFORE_KILL = 15
WRITES_AFTER_KILL = 15
RECOVERY_SECONDS = 2.0


@dataclass
class Writer:
    """Creates clusters through one server, one after another, until stopped; remembers
    which creations were acknowledged (201) and which are unknown (an error or no answer)."""

    server: HaServer
    token: str
    prefix: str = field(default_factory=lambda: unique("w"))
    acked: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            name = f"{self.prefix}-{number}"
            number += 1
            try:
                response = api_call(self.server, "POST", "/v3/clusters", self.token,
                                    json={"name": name}, timeout=15)
            except httpx.HTTPError as exc:
                self.unknown.append(name)
                self.errors.append(f"{name}: {type(exc).__name__}")
                continue
            if response.status_code == 201:
                self.acked.append(name)
            else:
                self.unknown.append(name)
                self.errors.append(f"{name}: {response.status_code} {response.text[:200]}")


@dataclass
class Subscriber:
    """A `/v3/subscribe` client of one server that collects cluster events; when the server
    closes the stream it reconnects with ?revision=<last seen>, as a client should."""

    server: HaServer
    token: str
    names: list[str] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)
    reconnects: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last: int | None = None
        while not self.stop.is_set():
            query = "" if last is None else f"&revision={last}"
            try:
                with ws_connect(self.server, f"/v3/subscribe?resourceTypes=cluster{query}",
                                self.token) as ws:
                    self.connected.set()
                    while not self.stop.is_set():
                        last = self._receive(ws, last)
            except (ConnectionClosed, OSError):
                self.reconnects += 1
                time.sleep(0.05)  # the server closed: reconnect (not synchronisation)

    def _receive(self, ws: Any, last: int | None) -> int | None:
        try:
            message = json.loads(ws.recv(timeout=0.2))
        except TimeoutError:
            return last
        if message["name"] == "resource.change":
            self.names.append(str(message["data"]["name"]))
            self.revisions.append(int(message["revision"]))
            return int(message["revision"])
        return last


@pytest.fixture
def pair(start_install: StartInstall) -> list[HaServer]:
    """Two servers of a fresh install."""
    return start_install(2)


@contextlib.contextmanager
def running(target: Writer | Subscriber) -> Iterator[threading.Thread]:
    """`target.run` in a thread until the block ends (then stopped and joined)."""
    thread = threading.Thread(target=target.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        target.stop.set()
        thread.join(timeout=30)


def test_killing_the_member_a_server_and_its_watch_use_loses_no_write_and_no_event(
    cluster: EtcdCluster, pair: list[HaServer]
) -> None:
    """Under a stream of creations through server A, kill -9 the etcd member A is connected
    to: every acknowledged creation is stored (read back through B), and A's subscriber sees
    each created cluster exactly once, in revision order."""
    a, b = pair
    token = login(a)
    member = cluster.index_of(a.store_endpoint())
    subscriber = Subscriber(a, token)
    writer = Writer(a, token)
    with running(subscriber):
        assert subscriber.connected.wait(10)
        with running(writer):
            wait_until(lambda: len(writer.acked) >= WRITES_BEFORE_KILL, timeout=20,
                       what="writes before the kill")
            before = len(writer.acked)
            cluster.kill(member)
            wait_until(lambda: len(writer.acked) >= before + WRITES_AFTER_KILL, timeout=20,
                       what=f"writes after the kill ({writer.errors[-3:]})")
        assert a.store_endpoint() != cluster.members[member].client_url
        acked = list(writer.acked)
        wait_until(lambda: set(acked) <= set(subscriber.names), timeout=15,
                   what="every acknowledged creation as an event")
    names = subscriber.names
    assert len(names) == len(set(names)), "an event was delivered twice"
    assert set(names) <= set(acked) | set(writer.unknown)
    assert subscriber.revisions == sorted(subscriber.revisions)
    reader = login(b)
    stored = api_call(b, "GET", "/v3/clusters?limit=10000", reader).json()["data"]
    stored_names = {c["name"] for c in stored if c["name"].startswith(writer.prefix)}
    assert set(acked) <= stored_names, sorted(set(acked) - stored_names)
    print(f"acked {len(acked)}, unknown {len(writer.unknown)}, subscriber reconnects "
          f"{subscriber.reconnects}, errors {writer.errors}")


def test_with_one_member_of_three_down_reads_and_writes_keep_working(
    cluster: EtcdCluster, pair: list[HaServer]
) -> None:
    """kill -9 of the member server A uses: within 2 s a write and a read through A succeed
    again, and /healthz stays 200 (the dead member shown on its own line)."""
    a, _ = pair
    token = login(a)
    member = cluster.index_of(a.store_endpoint())
    value = unique("brand")
    cluster.kill(member)
    killed = time.monotonic()

    def write_and_read() -> bool:
        put = api_call(a, "PUT", "/v3/settings/ui-pl", token, json={"value": value},
                       timeout=RECOVERY_SECONDS)
        got = api_call(a, "GET", "/v3/settings/ui-pl", token, timeout=RECOVERY_SECONDS)
        return put.status_code == 200 and got.json().get("value") == value

    wait_until(write_and_read, timeout=RECOVERY_SECONDS + 1, what="a write and a read")
    assert time.monotonic() - killed <= RECOVERY_SECONDS
    health = a.healthz()
    assert health.status_code == 200, health.text
    assert f"[-]store-member {cluster.members[member].name} failed" in health.text


def test_without_quorum_writes_answer_503_and_healthz_fails_until_it_is_back(
    cluster: EtcdCluster, pair: list[HaServer]
) -> None:
    """Two of three members down: a write through A answers 503 naming the store, /healthz
    answers non-200 (a load balancer takes the server out); with the members back, writes
    and /healthz recover."""
    a, _ = pair
    token = login(a)
    cluster.kill(1)
    cluster.kill(2)
    response = api_call(a, "PUT", "/v3/settings/ui-pl", token, json={"value": unique("x")},
                        timeout=30)
    assert response.status_code == 503, response.text
    assert "etcd" in response.json()["message"]
    wait_until(lambda: a.healthz().status_code != 200, timeout=10, what="/healthz to fail")
    assert "[-]store failed" in a.healthz().text
    assert httpx.get(f"{a.http_url}/healthz", timeout=10).status_code != 200
    cluster.restart(1, wait=False)
    cluster.restart(2, wait=False)
    for index in (1, 2):
        cluster.wait_healthy(index)
    wait_until(lambda: a.healthz().status_code == 200, timeout=15, what="/healthz to pass")
    value = unique("back")
    wait_until(lambda: api_call(a, "PUT", "/v3/settings/ui-pl", token,
                                json={"value": value}).status_code == 200,
               timeout=15, what="writes to work again")
    leader_of(pair)
