"""Abusive HTTP/2 clients against `corral lb`: rapid reset (CVE-2023-44487), CONTINUATION,
PING and SETTINGS floods, too many concurrent streams, and an upload to an upstream that does
not read. Each is answered on its own connection; the lb keeps serving everyone else."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, LbProcess, lb_config
from tests.e2e.lb_h2.h2client import H2Client
from tests.support.net import wait_until

pytestmark = pytest.mark.timeout(60)

MAX_STREAMS = 4


@pytest.fixture(scope="module")
def backend(module_backends: StartBackends) -> Backend:
    return module_backends(names=["abuse"])[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, backend: Backend, module_start_lb: StartLb) -> LbProcess:
    """An lb with a small stream limit and the default flood limits (100/s)."""
    return module_start_lb(
        lb_config(certs, [backend], http2={"max_concurrent_streams": MAX_STREAMS})
    )


def still_serves(certs: Certs, lb: LbProcess) -> None:
    with H2Client(certs, lb.port) as client:
        assert client.response(client.start("/echo")).status == 200


def test_rapid_reset_gets_goaway_and_costs_the_upstream_little(
    certs: Certs, lb: LbProcess, backend: Backend
) -> None:
    """500 streams opened and reset at once: GOAWAY ENHANCE_YOUR_CALM after 100 resets; few
    requests reach the backend (streams reset in the read that opened them never start), none
    stays in flight, and a new connection is served."""
    before = backend.stats()["requests"]
    with H2Client(certs, lb.port) as client:
        for _ in range(500):
            stream = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream, client.request_headers("/echo"), end_stream=True)
            client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
        goaway = client.wait_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    wait_until(lambda: backend.stats()["in_flight"] == 0, timeout=10)
    assert backend.stats()["requests"] - before < 50
    still_serves(certs, lb)
    assert "rapid reset" in lb.output()


def test_reset_stream_frees_its_upstream_connection(
    certs: Certs, lb: LbProcess, backend: Backend
) -> None:
    """A client that cancels a streaming response makes the lb close that upstream connection
    (the backend's handler ends), and the client's connection goes on."""
    with H2Client(certs, lb.port) as client:
        stream = client.start("/stream?chunks=600&interval=0.05")
        result = client.streams[stream]
        client.wait(lambda: len(result.body) > 0)
        assert backend.stats()["in_flight"] == 1
        client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
        wait_until(lambda: backend.stats()["in_flight"] == 0, timeout=10)
        assert client.response(client.start("/echo")).status == 200


def test_continuation_flood_gets_goaway(certs: Certs, lb: LbProcess) -> None:
    """A header block that never ends (HEADERS + endless 16 KB CONTINUATIONs) is cut off with
    GOAWAY ENHANCE_YOUR_CALM at 64 KiB (twice max_header_list_size)."""
    with H2Client(certs, lb.port) as client:
        frames = [HeadersFrame(1, data=b"\x00" * 16000)]
        frames += [ContinuationFrame(1, data=b"\x00" * 16000) for _ in range(20)]
        client.send_frames(frames)
        goaway = client.wait_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert goaway.additional_data and b"CONTINUATION flood" in goaway.additional_data
    still_serves(certs, lb)


def test_empty_continuation_frames_get_goaway(certs: Certs, lb: LbProcess) -> None:
    """Endless empty CONTINUATIONs (no bytes to count) still end with GOAWAY."""
    with H2Client(certs, lb.port) as client:
        frames = [HeadersFrame(1, data=b"")]
        frames += [ContinuationFrame(1, data=b"") for _ in range(200)]
        client.send_frames(frames)
        goaway = client.wait_goaway()
    assert goaway.error_code != ErrorCodes.NO_ERROR
    still_serves(certs, lb)


def test_ping_flood_gets_goaway(certs: Certs, lb: LbProcess) -> None:
    """1000 PINGs at once: GOAWAY ENHANCE_YOUR_CALM (no more than 100 PING ACKs written)."""
    with H2Client(certs, lb.port) as client:
        client.send_frames(PingFrame(0, opaque_data=b"%08d" % i) for i in range(1000))
        goaway = client.wait_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    still_serves(certs, lb)


def test_settings_flood_gets_goaway(certs: Certs, lb: LbProcess) -> None:
    """1000 SETTINGS frames at once: GOAWAY ENHANCE_YOUR_CALM."""
    with H2Client(certs, lb.port) as client:
        client.send_frames(SettingsFrame(0) for _ in range(1000))
        goaway = client.wait_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    still_serves(certs, lb)


def test_streams_up_to_the_limit_run_concurrently(
    certs: Certs, lb: LbProcess, backend: Backend
) -> None:
    """A client that honours SETTINGS_MAX_CONCURRENT_STREAMS (4) runs 4 slow requests at once."""
    with H2Client(certs, lb.port) as client:
        assert client.remote_setting(SettingCodes.MAX_CONCURRENT_STREAMS) == MAX_STREAMS
        streams = [client.start(f"/delay/1?i={i}") for i in range(MAX_STREAMS)]
        wait_until(lambda: backend.stats()["in_flight"] == MAX_STREAMS, timeout=10)
        assert [client.response(s).status for s in streams] == [200] * MAX_STREAMS


def test_more_streams_than_allowed_are_refused(certs: Certs, lb: LbProcess) -> None:
    """A client that opens a fifth stream while four are open (ignoring the setting) loses
    the connection: GOAWAY PROTOCOL_ERROR naming stream 7 as the last one processed."""
    with H2Client(certs, lb.port) as client:
        for i in range(MAX_STREAMS + 1):  # before reading the server's SETTINGS
            client.start(f"/delay/1?i={i}")
        goaway = client.wait_goaway()
    assert goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.REFUSED_STREAM)
    assert goaway.last_stream_id == 2 * MAX_STREAMS - 1
    still_serves(certs, lb)


def test_upload_to_an_upstream_that_does_not_read_is_held_back(certs: Certs, lb: LbProcess) -> None:
    """A 64 MiB upload to an upstream that reads nothing: the lb stops opening the client's
    window once the upstream socket is full, so the client can send only ~its window."""
    size = 64 * 1024 * 1024
    payload = b"u" * size
    with H2Client(certs, lb.port) as client:
        stream = client.start(
            "/delay/5", "POST", [(b"content-length", str(size).encode())], end=False
        )
        baseline = lb.rss()
        sent = 0
        while sent < size:
            sent += client.send_body(stream, payload[sent : sent + 1024 * 1024])
            if not client.conn.local_flow_control_window(stream) and not client.receive_once(
                timeout=2.0  # the behaviour under test: no window opens while nobody reads
            ):
                break
        grown = lb.rss() - baseline
        client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
    assert sent < 8 * 1024 * 1024, sent
    assert grown < 16 * 1024 * 1024, grown
    still_serves(certs, lb)


def test_malformed_request_resets_only_its_stream(certs: Certs, lb: LbProcess) -> None:
    """RFC 9113 §8.1.1: a request with an upper-case field name and one with a connection-
    specific field are each reset (PROTOCOL_ERROR); a request already in flight on the same
    connection gets its answer, and the connection takes new requests."""
    with H2Client(certs, lb.port) as client:
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        slow = client.start("/delay/1")
        upper = client.start("/echo", extra=[(b"X-Upper-Case", b"1")])
        hop = client.start("/echo", extra=[(b"connection", b"keep-alive")])
        assert client.response(upper).reset_code == ErrorCodes.PROTOCOL_ERROR
        assert client.response(hop).reset_code == ErrorCodes.PROTOCOL_ERROR
        assert client.response(slow).status == 200
        assert client.terminated is None
        assert client.response(client.start("/echo")).status == 200
    assert "malformed HTTP/2 request" in lb.output()
