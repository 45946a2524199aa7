"""The exchange's phase table, and the paths real exchanges take through it (in memory)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.proxy import exchange_phase
from corral.proxy.exchange import Exchange
from corral.proxy.exchange_phase import FINAL, NEXT, IllegalTransition, Phase, check
from tests.unit.proxy_harness import Harness, harness_fixture, response

GET = b"GET / HTTP/1.1\r\nHost: rancher.test\r\n\r\n"


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


class Paths:
    """The phases each exchange went through, in the order the exchanges were created."""

    def __init__(self) -> None:
        self.by_exchange: dict[Exchange, list[Phase]] = {}  # keeps the exchanges alive

    def __getitem__(self, index: int) -> list[Phase]:
        return list(self.by_exchange.values())[index]


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    """Every exchange's phases, recorded as the exchanges move."""
    recorded = Paths()

    def enter(exchange: object, phase: Phase) -> None:
        assert isinstance(exchange, Exchange)
        recorded.by_exchange.setdefault(exchange, [exchange.phase]).append(phase)

    monkeypatch.setattr(exchange_phase, "observer", enter)
    return recorded


def test_final_phases_go_nowhere() -> None:
    """DONE, TUNNEL and ABANDONED are the end; every other phase can end (DONE or ABANDONED)."""
    for phase in Phase:
        if phase in FINAL:
            assert not NEXT[phase]
        else:
            assert Phase.ABANDONED in NEXT[phase]
            assert Phase.DONE in NEXT[phase]


def test_illegal_move_is_refused() -> None:
    """A move the table does not list raises (a response cannot restart once it streamed)."""
    with pytest.raises(IllegalTransition, match="RESPONDING to SENT"):
        check(Phase.RESPONDING, Phase.SENT)
    with pytest.raises(IllegalTransition):
        check(Phase.DONE, Phase.ABANDONED)
    assert check(Phase.SENT, Phase.RESPONDING) is Phase.RESPONDING


def test_new_connection_then_pooled_one(h: Harness, paths: Paths) -> None:
    """The first request connects; the second gets the pooled connection straight away."""
    client = h.http1_client()
    client.send(GET)
    h.upstream().reply(response())
    client.send(GET)
    h.upstream().reply(response())
    assert paths[0] == [Phase.NEW, Phase.CONNECTING, Phase.SENT, Phase.RESPONDING, Phase.DONE]
    assert paths[1] == [Phase.NEW, Phase.SENT, Phase.RESPONDING, Phase.DONE]


def test_stale_pooled_connection_is_retried_on_a_fresh_one(
    h: Harness, paths: Paths
) -> None:
    """A pooled connection closed by the upstream as it is used: SENT → CONNECTING → SENT."""
    client = h.http1_client()
    client.send(GET)
    h.upstream().reply(response())
    client.send(GET)
    h.upstream().close()
    h.upstream().reply(response())
    assert client.take().count(b"200 OK") == 2
    assert paths[1] == [
        Phase.NEW,
        Phase.SENT,
        Phase.CONNECTING,
        Phase.SENT,
        Phase.RESPONDING,
        Phase.DONE,
    ]


def test_upgrade_ends_in_tunnel(h: Harness, paths: Paths) -> None:
    """A 101 takes the exchange to TUNNEL."""
    client = h.http1_client()
    client.send(
        b"GET /ws HTTP/1.1\r\nHost: rancher.test\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n"
    )
    h.upstream().reply(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                       b"Upgrade: websocket\r\n\r\n")
    assert paths[0][-1] is Phase.TUNNEL


def test_client_gone_mid_response_is_abandoned(h: Harness, paths: Paths) -> None:
    """A client that leaves while the body streams leaves its exchange ABANDONED."""
    client = h.http1_client()
    client.send(GET)
    h.upstream().reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc")
    client.close()
    assert paths[0][-2:] == [Phase.RESPONDING, Phase.ABANDONED]


def test_a_small_response_is_held_in_sent_until_complete(h: Harness, paths: Paths) -> None:
    """A GET's response with a small Content-Length stays SENT (nothing relayed) until its
    body is complete, then goes RESPONDING → DONE in one step."""
    client = h.http1_client()
    client.send(GET)
    upstream = h.upstream()
    upstream.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert client.take() == b""
    assert paths[0][-1] == Phase.SENT
    upstream.reply(b"defghij")
    assert client.take().endswith(b"\r\n\r\nabcdefghij")
    assert paths[0][-2:] == [Phase.RESPONDING, Phase.DONE]


def test_no_endpoint_is_a_local_answer(h: Harness, paths: Paths) -> None:
    """Every connect refused: NEW → CONNECTING → DONE with the proxy's own 502."""

    async def refuse(host: str, port: int) -> None:
        raise ConnectionRefusedError

    h.connect = refuse
    client = h.http1_client()
    client.send(GET)
    assert client.take().startswith(b"HTTP/1.1 502 ")
    assert paths[0] == [Phase.NEW, Phase.CONNECTING, Phase.DONE]
