"""HTTP/2 from clients through `corral lb` to HTTP/1.1 backends: curl, httpx, nghttp, h2load
and a raw h2 client; headers, X-Forwarded-*, many streams on one connection, bodies, trailers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import subprocess
from typing import Any

import httpx
import pytest
from h2.settings import SettingCodes

from tests.e2e.lb.backend import pattern_bytes, pattern_sha256
from tests.e2e.lb.clients import curl, header_values, tls_connect
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import SERVER_NAME, Backend, Certs, LbProcess, lb_config
from tests.e2e.lb_h2.h2client import H2Client
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def backend(module_backends: StartBackends) -> Backend:
    return module_backends(names=["h2b"])[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, backend: Backend, module_start_lb: StartLb) -> LbProcess:
    """One lb with the default ALPN ([h2, http/1.1]) in front of one backend."""
    return module_start_lb(lb_config(certs, [backend]))


def h2_client(certs: Certs, port: int) -> httpx.Client:
    return httpx.Client(
        base_url=f"https://localhost:{port}",
        verify=certs.client_context(alpn=["h2", "http/1.1"]),
        http2=True,
        timeout=30,
    )


def echoed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_alpn_prefers_h2_and_falls_back_to_http_1_1(certs: Certs, lb: LbProcess) -> None:
    """A client offering h2 gets h2; one offering only http/1.1, or no ALPN, gets HTTP/1.1."""
    with tls_connect(certs, lb.port) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    with H2Client(certs, lb.port) as client:  # offers h2 only and asserts it was chosen
        assert client.sock.selected_alpn_protocol() == "h2"
    both = certs.client_context(alpn=["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", lb.port)) as raw,
        both.wrap_socket(raw, server_hostname=SERVER_NAME) as sock,
    ):
        assert sock.selected_alpn_protocol() == "h2"
    with httpx.Client(verify=certs.client_context(alpn=[]), timeout=30) as client:
        response = client.get(f"https://localhost:{lb.port}/echo")
    assert response.http_version == "HTTP/1.1"
    assert echoed(response)["path"] == "/echo"


def test_curl_http2_headers_and_forwarding(certs: Certs, lb: LbProcess) -> None:
    """curl --http2: the backend sees Host from :authority, X-Forwarded-* as for HTTP/1.1,
    the client's fields (cookies joined), and no HTTP/2-only or hop-by-hop fields."""
    result = curl(
        certs,
        lb.port,
        "/echo?a=1",
        "--http2",
        "-H",
        "X-Forwarded-For: 203.0.113.7",
        "-H",
        "X-Forwarded-Proto: gopher",
        "-H",
        "X-Custom: kept",
        "-H",
        "Cookie: a=1",
        "-w",
        "\n%{http_version}",
    )
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.decode().rpartition("\n")
    assert version == "2"
    echo = json.loads(body)
    headers = [(n.lower(), v) for n, v in echo["headers"]]
    assert header_values(headers, "host") == [f"{SERVER_NAME}:{lb.port}"]
    assert header_values(headers, "x-forwarded-proto") == ["https"]
    assert header_values(headers, "x-forwarded-port") == [str(lb.port)]
    assert header_values(headers, "x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]
    assert header_values(headers, "x-custom") == ["kept"]
    assert header_values(headers, "cookie") == ["a=1"]
    assert echo["query"] == "a=1"
    assert echo["http_version"] == "1.1"
    assert not [n for n, _ in headers if n.startswith(":") or n in ("te", "connection")]


def test_response_drops_hop_by_hop_headers(certs: Certs, lb: LbProcess) -> None:
    """Connection-specific response headers from the upstream never reach an HTTP/2 client
    (h2 clients reject such a response); ordinary ones do."""
    with h2_client(certs, lb.port) as client:
        response = client.get(
            "/status/200",
            params=[
                ("header", "Keep-Alive:timeout=5"),
                ("header", "Connection:keep-alive, X-Hop"),
                ("header", "X-Hop:secret"),
                ("header", "X-App:yes"),
            ],
        )
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.headers["x-app"] == "yes"
    assert "keep-alive" not in response.headers
    assert "x-hop" not in response.headers
    assert "connection" not in response.headers


def test_httpx_concurrent_streams_on_one_connection(
    certs: Certs, lb: LbProcess, backend: Backend
) -> None:
    """100 concurrent requests over one httpx HTTP/2 connection each get their own answer, and
    the backend sees 100 of them in flight at once."""
    peak = [0]

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=f"https://localhost:{lb.port}",
            verify=certs.client_context(alpn=["h2"]),
            http2=True,
            limits=limits,
            timeout=30,
        ) as client:

            async def watch() -> None:
                while peak[0] < 100:
                    stats = await asyncio.to_thread(backend.stats)
                    peak[0] = max(peak[0], stats["in_flight"])
                    await asyncio.sleep(0.02)  # polling interval, not synchronisation

            watcher = asyncio.create_task(watch())
            try:
                return await asyncio.gather(*(client.get(f"/delay/2?i={i}") for i in range(100)))
            finally:
                watcher.cancel()

    responses = asyncio.run(run())
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [r.status_code for r in responses] == [200] * 100
    assert peak[0] == 100


def test_large_upload_and_download_with_httpx(certs: Certs, lb: LbProcess) -> None:
    """A 24 MiB chunked upload and a 24 MiB download arrive whole over HTTP/2."""
    size = 24 * 1024 * 1024
    piece = bytes(range(256)) * 256

    def body() -> Any:
        for _ in range(size // len(piece)):
            yield piece

    digest = hashlib.sha256(piece * (size // len(piece))).hexdigest()
    with h2_client(certs, lb.port) as client:
        uploaded = client.post("/upload", content=body())
        assert uploaded.http_version == "HTTP/2"
        assert uploaded.json()["length"] == size
        assert uploaded.json()["sha256"] == digest
        downloaded = client.get(f"/bytes/{size}")
    assert hashlib.sha256(downloaded.content).hexdigest() == pattern_sha256(size), (
        _first_difference(downloaded.content, size)
    )


def _first_difference(got: bytes, size: int) -> str:
    """Where a downloaded body departs from the backend's pattern (for the failure message)."""
    expected = pattern_bytes(size)
    if len(got) != len(expected):
        return f"length {len(got)} != {len(expected)}"
    offset = next(i for i in range(len(got)) if got[i] != expected[i])
    return f"same length; first difference at byte {offset} (offset mod 65536: {offset % 65536})"


def test_nghttp_download_and_upload(certs: Certs, lb: LbProcess, tmp_path: Any) -> None:
    """nghttp fetches a body and posts one (with content-length) through the lb."""
    got = subprocess.run(
        ["nghttp", f"https://127.0.0.1:{lb.port}/bytes/300000"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).hexdigest() == pattern_sha256(300000)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"x" * 200000)
    sent = subprocess.run(
        ["nghttp", "-d", str(upload), f"https://127.0.0.1:{lb.port}/upload"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["length"] == 200000


def test_small_response_is_two_frames(lb: LbProcess) -> None:
    """A small response is one HEADERS and one DATA frame carrying END_STREAM (nghttp -v)."""
    got = subprocess.run(
        ["nghttp", "-nv", f"https://127.0.0.1:{lb.port}/echo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    received = re.findall(
        r"recv (HEADERS|DATA) frame <length=(\d+), flags=(0x[0-9a-f]+)", got.stdout
    )
    assert [kind for kind, _, _ in received] == ["HEADERS", "DATA"], got.stdout
    _, length, flags = received[1]
    assert int(length) > 0 and int(flags, 16) & 0x1, got.stdout  # END_STREAM on the data


def test_h2load_many_streams_without_failures(lb: LbProcess) -> None:
    """h2load: 4 connections x 32 concurrent streams, 4000 requests, all succeed."""
    result = subprocess.run(
        ["h2load", "-n", "4000", "-c", "4", "-m", "32", f"https://127.0.0.1:{lb.port}/echo"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Application protocol: h2" in result.stdout
    done = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", result.stdout
    )
    statuses = re.search(r"status codes: (\d+) 2xx", result.stdout)
    assert done and statuses, result.stdout
    assert done.groups() == ("4000", "4000", "4000"), result.stdout
    assert statuses.group(1) == "4000", result.stdout


def test_header_list_too_large_gets_431_and_connection_survives(
    certs: Certs, lb: LbProcess
) -> None:
    """A request whose header list exceeds max_header_list_size (32 KiB) is answered 431 on its
    stream; the next request on the same connection is served."""
    with h2_client(certs, lb.port) as client:
        big = client.get("/echo", headers={"x-big": "a" * 40000})
        assert big.status_code == 431
        assert echoed(client.get("/echo"))["path"] == "/echo"


def test_head_and_no_body_statuses(certs: Certs, lb: LbProcess) -> None:
    """HEAD and 204 end the stream on the HEADERS frame; HEAD keeps the announced length."""
    with H2Client(certs, lb.port) as client:
        head = client.response(client.start("/echo", "HEAD"))
        empty = client.response(client.start("/status/204"))
    assert head.status == 200 and int(head.header(b"content-length") or 0) > 100
    assert bytes(head.body) == b""
    assert empty.status == 204 and bytes(empty.body) == b""


def test_unreachable_upstream_is_502_on_the_stream(certs: Certs, start_lb: StartLb) -> None:
    """An upstream that refuses connections gets 502 on the stream, as over HTTP/1.1."""
    lb = start_lb(lb_config(certs, [f"127.0.0.1:{free_port()}"]))
    with H2Client(certs, lb.port) as client:
        failed = client.response(client.start("/echo"))
    assert failed.status == 502
    assert bytes(failed.body) == b"upstream 'app': no endpoint could be reached\n"


def test_trailers_are_relayed(certs: Certs, trailer_backend: str, start_lb: StartLb) -> None:
    """An upstream's chunked trailers arrive as trailing HEADERS with END_STREAM."""
    lb = start_lb(lb_config(certs, [trailer_backend]))
    with H2Client(certs, lb.port) as client:
        result = client.response(client.start("/anything", extra=[(b"te", b"trailers")]))
    assert result.status == 200
    assert bytes(result.body) == b"trailers follow\n"
    assert (b"x-checksum", b"1234") in result.trailers
    assert (b"grpc-status", b"0") in result.trailers
    assert b"trailer" not in dict(result.headers)


def test_expect_100_continue_is_relayed(certs: Certs, lb: LbProcess) -> None:
    """`expect: 100-continue`: the upstream's 100 reaches the client as an informational
    response, then the body goes up."""
    with H2Client(certs, lb.port) as client:
        stream = client.start(
            "/upload",
            "POST",
            [(b"expect", b"100-continue"), (b"content-length", b"5")],
            end=False,
        )
        result = client.streams[stream]
        client.wait(lambda: bool(result.informational))
        assert result.informational[0] == [(b":status", b"100")]
        client.send_body(stream, b"hello", end=True)
        client.response(stream)
    assert json.loads(bytes(result.body))["length"] == 5


def test_slow_reader_download_keeps_lb_memory_bounded(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """A client that stops opening its window at the start of a 64 MiB body: the lb stops
    reading the upstream instead of buffering (RSS grows by far less than the body), and the
    whole body still arrives once the client reads again."""
    size = 64 * 1024 * 1024
    window = 4 * 1024 * 1024
    lb = start_lb(lb_config(certs, [backend]))
    with H2Client(certs, lb.port, auto_ack=False) as client:
        stream = client.start(f"/bytes/{size}")
        result = client.streams[stream]
        client.wait(lambda: len(result.body) > 0)
        baseline = lb.rss()
        # The stall IS the behaviour under test: for 2 s nobody reads, the upstream could send
        # all 64 MiB in that time over loopback if the lb kept reading.
        while client.receive_once(timeout=2.0):
            pass
        stalled = lb.rss()
        received_while_stalled = len(result.body)
        client.auto_ack = True
        client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
        client.conn.increment_flow_control_window(window)
        client.conn.acknowledge_received_data(received_while_stalled, stream)
        client.flush()
        client.response(stream, timeout=120)
    assert received_while_stalled <= 65535  # the client's initial window, nothing more
    assert stalled - baseline < 16 * 1024 * 1024, (baseline, stalled)
    assert len(result.body) == size
    assert hashlib.sha256(result.body).hexdigest() == pattern_sha256(size)
