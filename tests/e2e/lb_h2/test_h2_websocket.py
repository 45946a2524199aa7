"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) through `corral lb` to an HTTP/1.1
WebSocket backend: the settings, the handshake translation, echo, declines and idle timeout."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage

from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, LbProcess, lb_config
from tests.e2e.lb_h2.h2client import H2Client, Headers
from tests.support.net import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def backend(module_backends: StartBackends) -> Backend:
    return module_backends(names=["wsb"])[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, backend: Backend, module_start_lb: StartLb) -> LbProcess:
    return module_start_lb(lb_config(certs, [backend]))


def connect_headers(client: H2Client, path: str, extra: Headers | None = None) -> Headers:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":authority", client.authority),
        (b":path", path.encode()),
        (b"sec-websocket-version", b"13"),
        *(extra or []),
    ]


class WsOverH2:
    """wsproto framing on one HTTP/2 stream."""

    def __init__(self, client: H2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.ws = WsConnection(ConnectionType.CLIENT)
        self.read = 0

    def send(self, event: Event) -> None:
        self.client.send_all(self.stream_id, self.ws.send(event))

    def receive(self) -> Event:
        result = self.client.streams[self.stream_id]
        while True:
            for event in self.ws.events():
                return event
            self.client.wait(lambda: len(result.body) > self.read or result.ended)
            assert len(result.body) > self.read, "the stream ended without a frame"
            self.ws.receive_data(bytes(result.body[self.read :]))
            self.read = len(result.body)


def test_settings_advertise_extended_connect(certs: Certs, lb: LbProcess) -> None:
    """SETTINGS carry ENABLE_CONNECT_PROTOCOL=1 and the configured stream limit (128)."""
    with H2Client(certs, lb.port) as client:
        assert client.remote_setting(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        assert client.remote_setting(SettingCodes.MAX_CONCURRENT_STREAMS) == 128
        assert client.remote_setting(SettingCodes.INITIAL_WINDOW_SIZE) == 1024 * 1024


def test_websocket_echo_over_extended_connect(
    certs: Certs, lb: LbProcess, backend: Backend
) -> None:
    """:status 200 for the upstream's 101; text and a 1 MiB binary message echo back; the
    upstream saw an HTTP/1.1 Upgrade with X-Forwarded-*; closing ends the tunnel."""
    with H2Client(certs, lb.port) as client:
        stream = client.start(
            "",
            headers=connect_headers(client, "/ws", [(b"sec-websocket-protocol", b"chat")]),
            end=False,
        )
        result = client.streams[stream]
        client.wait(lambda: bool(result.headers))
        assert result.status == 200
        seen = dict(result.headers)
        assert seen[b"x-echo-upgrade"] == b"websocket"
        assert seen[b"x-echo-connection"].lower() == b"upgrade"
        assert seen[b"x-echo-x-forwarded-proto"] == b"https"
        assert seen[b"x-echo-x-forwarded-for"] == b"127.0.0.1"
        assert seen[b"x-echo-host"] == client.authority
        assert b"sec-websocket-accept" not in seen and b"upgrade" not in seen
        wait_until(lambda: backend.stats()["tunnels_open"] == 1, timeout=10)
        ws = WsOverH2(client, stream)
        ws.send(TextMessage(data="hello over h2"))
        echoed = ws.receive()
        assert isinstance(echoed, TextMessage) and echoed.data == "hello over h2"
        big = bytes(range(256)) * 4096
        ws.send(BytesMessage(data=big))
        got = b""
        while len(got) < len(big):
            event = ws.receive()
            assert isinstance(event, BytesMessage)
            got += bytes(event.data)
        assert got == big
        ws.send(CloseConnection(code=1000))
        closing = ws.receive()
        assert isinstance(closing, CloseConnection) and closing.code == 1000
        client.conn.end_stream(stream)
        client.flush()
        client.response(stream)
    wait_until(lambda: backend.stats()["tunnels_open"] == 0, timeout=10)


def test_declined_upgrade_is_not_a_tunnel(certs: Certs, lb: LbProcess) -> None:
    """An upstream that answers an upgrade with 200 (no 101) makes a 502, never a 200 that
    would tell the client the tunnel is open; a 404 passes as it is."""
    with H2Client(certs, lb.port) as client:
        ok = client.response(
            client.start("", headers=connect_headers(client, "/status/200"), end=False)
        )
        missing = client.response(
            client.start("", headers=connect_headers(client, "/status/404"), end=False)
        )
    assert ok.status == 502
    assert missing.status == 404


def test_other_protocols_and_plain_connect_are_refused(certs: Certs, lb: LbProcess) -> None:
    """`:protocol` other than websocket, and classic CONNECT, get 501."""
    with H2Client(certs, lb.port) as client:
        headers = connect_headers(client, "/ws")
        headers[1] = (b":protocol", b"connect-udp")
        other = client.response(client.start("", headers=headers, end=False))
        plain = client.response(
            client.start(
                "", headers=[(b":method", b"CONNECT"), (b":authority", b"db:5432")], end=False
            )
        )
    assert other.status == 501
    assert plain.status == 501


def test_idle_websocket_is_closed_after_read_timeout(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """A tunnel silent in both directions for read_timeout (1 s here) is reset (CANCEL) and
    its upstream connection closed."""
    lb = start_lb(lb_config(certs, [backend], server={"read_timeout": "1s"}))
    with H2Client(certs, lb.port) as client:
        stream = client.start("", headers=connect_headers(client, "/ws"), end=False)
        result = client.streams[stream]
        client.wait(lambda: bool(result.headers))
        assert result.status == 200
        client.wait(lambda: result.reset_code is not None, timeout=20)  # the idle period
    assert result.reset_code == ErrorCodes.CANCEL
    wait_until(lambda: backend.stats()["tunnels_open"] == 0, timeout=10)


def test_client_reset_closes_the_upstream_tunnel(
    certs: Certs, lb: LbProcess, backend: Backend
) -> None:
    """RST_STREAM from the client on an open WebSocket closes the upstream connection."""
    with H2Client(certs, lb.port) as client:
        stream = client.start("", headers=connect_headers(client, "/ws"), end=False)
        result = client.streams[stream]
        client.wait(lambda: bool(result.headers))
        wait_until(lambda: backend.stats()["tunnels_open"] >= 1, timeout=10)
        client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
        wait_until(lambda: backend.stats()["tunnels_open"] == 0, timeout=10)
        again = client.response(client.start("/echo"))  # the connection itself lives on
    assert again.status == 200
