"""GOAWAY when `corral lb` stops or reloads (streams in flight finish, new ones are refused,
WebSockets over HTTP/2 stay open on the draining worker), and the HTTP/2 timeouts."""

from __future__ import annotations

import signal

import pytest
from h2.errors import ErrorCodes
from wsproto.events import TextMessage

from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, lb_config
from tests.e2e.lb_h2.h2client import H2Client
from tests.e2e.lb_h2.test_h2_websocket import WsOverH2, connect_headers
from tests.support.net import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def backend(backends: StartBackends) -> Backend:
    return backends(names=["stop"])[0]


def test_sigterm_sends_goaway_and_finishes_streams_in_flight(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """SIGTERM: GOAWAY (NO_ERROR, last stream = the one in flight); a stream opened after it
    is refused (REFUSED_STREAM, safe to retry); the one in flight completes; then the
    connection closes."""
    lb = start_lb(lb_config(certs, [backend]))
    with H2Client(certs, lb.port) as client:
        assert client.response(client.start("/echo")).status == 200
        slow = client.start("/delay/2")
        wait_until(lambda: backend.stats()["in_flight"] == 1, timeout=10)
        lb.process.signal(signal.SIGTERM)
        goaway = client.wait_goaway()
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert goaway.last_stream_id == slow
        late = client.response(client.start("/echo"))
        assert late.reset_code == ErrorCodes.REFUSED_STREAM
        finished = client.response(slow)
        assert finished.status == 200 and b'"delayed": 2.0' in bytes(finished.body)
        client.wait_closed()


def test_reload_keeps_a_websocket_over_h2_open(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """A reload sends GOAWAY to the old worker's HTTP/2 connections; a WebSocket on one still
    echoes afterwards, new connections reach the new workers, and the old connection closes
    once the WebSocket ends."""
    lb = start_lb(lb_config(certs, [backend]))
    with H2Client(certs, lb.port) as client:
        stream = client.start("", headers=connect_headers(client, "/ws"), end=False)
        result = client.streams[stream]
        client.wait(lambda: bool(result.headers))
        assert result.status == 200
        ws = WsOverH2(client, stream)
        lb.process.signal(signal.SIGHUP)
        goaway = client.wait_goaway()
        assert goaway.error_code == ErrorCodes.NO_ERROR
        ws.send(TextMessage(data="still here"))
        echoed = ws.receive()
        assert isinstance(echoed, TextMessage) and echoed.data == "still here"
        with H2Client(certs, lb.port) as fresh:
            assert fresh.response(fresh.start("/echo")).status == 200
        client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
        client.wait_closed()
    assert "reloaded" in lb.output()


def test_idle_connection_gets_goaway_after_keepalive_timeout(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """A connection without streams for keepalive_timeout (1 s here) gets GOAWAY NO_ERROR and
    is closed."""
    lb = start_lb(lb_config(certs, [backend], keepalive_timeout="1s"))
    with H2Client(certs, lb.port) as client:
        assert client.response(client.start("/echo")).status == 200
        goaway = client.wait_goaway(timeout=20)  # the idle period is the behaviour
        assert goaway.error_code == ErrorCodes.NO_ERROR
        client.wait_closed()


def test_stream_whose_client_opens_no_window_is_reset_after_send_timeout(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """A client that never acknowledges a large body has that stream reset (CANCEL) after
    send_timeout (1 s here), which frees the upstream; its connection keeps working."""
    lb = start_lb(lb_config(certs, [backend], server={"send_timeout": "1s"}))
    with H2Client(certs, lb.port, auto_ack=False) as client:
        stream = client.start("/bytes/10000000")
        result = client.streams[stream]
        client.wait(lambda: result.reset_code is not None, timeout=30)  # the stall
        assert result.reset_code == ErrorCodes.CANCEL
        wait_until(lambda: backend.stats()["in_flight"] == 0, timeout=10)
        client.auto_ack = True
        client.conn.acknowledge_received_data(len(result.body), stream)
        client.flush()
        assert client.response(client.start("/echo")).status == 200
    assert "stopped reading HTTP/2 stream" in lb.output()
