"""Bodies stream through the lb both ways without buffering, in bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.lb.backend import pattern_bytes, pattern_sha256
from tests.e2e.lb.clients import (
    announced_close,
    curl,
    get_request,
    https_client,
    read_head,
    read_response,
    read_until_closed,
    tls_connect,
)
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import Backend, Certs, LbProcess, lb_config

MiB = 1024 * 1024
BIG = 300 * MiB
SLOW_RATE = 30 * MiB  # bytes/s: several times slower than the lb can move data
MEMORY_BOUND = 16 * MiB


@pytest.fixture(scope="module")
def backend(module_backends: StartBackends) -> Backend:
    return module_backends(1)[0]


@pytest.fixture(scope="module")
def lb(certs: Certs, backend: Backend, module_start_lb: StartLb) -> LbProcess:
    return module_start_lb(lb_config(certs, [backend]))


def test_response_chunks_arrive_as_sent(certs: Certs, lb: LbProcess) -> None:
    """The first /stream chunk reaches the client before the backend sends the last one."""
    with (
        https_client(certs, lb.port) as client,
        client.stream("GET", "/stream?chunks=4&interval=0.5") as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        first = json.loads(next(lines))
        first_arrived = time.time()
        rest = [json.loads(line) for line in lines if line]
    assert first["chunk"] == 0
    assert [chunk["chunk"] for chunk in rest] == [1, 2, 3]
    assert first_arrived < rest[-1]["sent_at"], "the lb held the response until it was complete"


def test_content_length_download(certs: Certs, lb: LbProcess) -> None:
    """A Content-Length body arrives complete, with its Content-Length."""
    with https_client(certs, lb.port) as client:
        response = client.get(f"/bytes/{5 * MiB + 7}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(5 * MiB + 7)
    assert response.content == pattern_bytes(5 * MiB + 7)


def test_chunked_download(certs: Certs, lb: LbProcess) -> None:
    """A chunked body arrives complete and chunked (no Content-Length invented by buffering)."""
    with https_client(certs, lb.port) as client:
        response = client.get(f"/chunked/{5 * MiB + 7}")
    assert response.status_code == 200
    assert response.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.headers
    assert response.content == pattern_bytes(5 * MiB + 7)


def test_content_length_upload(certs: Certs, lb: LbProcess) -> None:
    """A Content-Length request body reaches the backend intact."""
    body = os.urandom(5 * MiB + 3)
    with https_client(certs, lb.port) as client:
        result = client.post("/upload", content=body).json()
    assert result == {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "backend": "b1",
    }


def test_chunked_upload(certs: Certs, lb: LbProcess) -> None:
    """A chunked request body (no length known in advance) reaches the backend intact."""
    pieces = [os.urandom(size) for size in (1, 1000, 65536, 1 * MiB, 17)]

    def generate() -> Iterator[bytes]:
        yield from pieces

    with https_client(certs, lb.port) as client:
        result = client.post("/upload", content=generate()).json()
    body = b"".join(pieces)
    assert (result["length"], result["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_expect_100_continue_with_curl(certs: Certs, lb: LbProcess, tmp_path: object) -> None:
    """curl's Expect: 100-continue upload gets a 100 Continue, then the body goes through."""
    body = pattern_bytes(3 * MiB)
    result = curl(
        certs,
        lb.port,
        "/upload",
        "-v",
        "--http1.1",
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "30",
        "--data-binary",
        f"@{_write(tmp_path, body)}",
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"< HTTP/1.1 100" in result.stderr, result.stderr.decode()
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(body).hexdigest()


def _write(directory: object, data: bytes) -> str:
    path = os.path.join(str(directory), "body.bin")
    with open(path, "wb") as file:
        file.write(data)
    return path


class PeakRss:
    """Samples the lb's resident memory in a thread; `peak` is the highest value seen."""

    def __init__(self, lb: LbProcess) -> None:
        self.lb = lb
        self.peak = lb.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.lb.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.lb.rss())


def warm_up(certs: Certs, lb: LbProcess) -> int:
    """Run the transfer paths once so lazily allocated buffers exist; return the lb's RSS."""
    with https_client(certs, lb.port) as client:
        assert len(client.get(f"/bytes/{16 * MiB}").content) == 16 * MiB
        assert client.post("/upload", content=b"x" * 16 * MiB).json()["length"] == 16 * MiB
    return lb.rss()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_slow_client_download_memory_bounded(certs: Certs, lb: LbProcess) -> None:
    """A 300 MiB download read slowly by the client grows the lb by less than 16 MiB."""
    baseline = warm_up(certs, lb)
    digest = hashlib.sha256()
    received = 0
    started = time.monotonic()
    with (
        PeakRss(lb) as memory,
        https_client(certs, lb.port) as client,
        client.stream("GET", f"/bytes/{BIG}") as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw(256 * 1024):
            digest.update(chunk)
            received += len(chunk)
            ahead = received / SLOW_RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # reading slowly is the behaviour under test
    assert received == BIG
    assert digest.hexdigest() == pattern_sha256(BIG)
    growth = memory.peak - baseline
    print(f"lb RSS {baseline / MiB:.1f} MiB, grew by {growth / MiB:.1f} MiB")
    assert growth < MEMORY_BOUND, f"lb grew by {growth / MiB:.1f} MiB during a slow download"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_slow_upstream_upload_memory_bounded(certs: Certs, lb: LbProcess) -> None:
    """A 300 MiB upload to a backend reading slowly grows the lb by less than 16 MiB."""
    baseline = warm_up(certs, lb)
    digest = hashlib.sha256()
    block = os.urandom(MiB)

    def body() -> Iterator[bytes]:
        for index in range(BIG // MiB):
            piece = block[index:] + block[:index]
            digest.update(piece)
            yield piece

    with PeakRss(lb) as memory, https_client(certs, lb.port) as client:
        response = client.post(
            f"/upload?slow={SLOW_RATE // 1024}",
            content=body(),
            headers={"Content-Length": str(BIG)},
        )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["length"], result["sha256"]) == (BIG, digest.hexdigest())
    growth = memory.peak - baseline
    print(f"lb RSS {baseline / MiB:.1f} MiB, grew by {growth / MiB:.1f} MiB")
    assert growth < MEMORY_BOUND, f"lb grew by {growth / MiB:.1f} MiB during a slow upload"


def test_upstream_dying_mid_body_closes_client(certs: Certs, lb: LbProcess) -> None:
    """An upstream that drops the connection mid-body: the client's connection is closed short."""
    size = 4 * MiB
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request(f"/truncate/{size}"))
        head, body = read_head(sock)
        assert head.status == 200
        rest, closed = read_until_closed(sock)
    assert closed
    assert len(body + rest) < size
    with https_client(certs, lb.port) as client:
        assert client.get("/status/200").status_code == 200


def test_upstream_silent_after_head_closes_after_read_timeout(
    certs: Certs, backend: Backend, start_lb: StartLb
) -> None:
    """After the response head, upstream silence longer than read_timeout closes the connection."""
    lb = start_lb(lb_config(certs, [backend], server={"read_timeout": "1s"}))
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(get_request("/stream?chunks=2&interval=30"))
        head, body = read_head(sock)
        assert head.status == 200
        rest, closed = read_until_closed(sock, timeout=20)
    assert closed, "the lb kept waiting past read_timeout"
    data = body + rest
    assert b'"chunk": 0' in data and b'"chunk": 1' not in data
    assert not data.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees it was cut


def test_many_concurrent_clients(certs: Certs, lb: LbProcess) -> None:
    """Fifty concurrent keep-alive clients, ten requests each: every response is right."""

    async def one(client: httpx.AsyncClient, index: int) -> list[bool]:
        results = []
        for n in range(10):
            response = await client.post("/echo", content=f"{index}-{n}".encode())
            results.append(response.json()["body_length"] == len(f"{index}-{n}"))
        return results

    async def run() -> list[bool]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=f"https://localhost:{lb.port}",
            verify=certs.client_context(),
            limits=limits,
            timeout=60,
        ) as client:
            batches = await asyncio.gather(*(one(client, i) for i in range(50)))
        return [ok for batch in batches for ok in batch]

    outcomes = asyncio.run(run())
    assert len(outcomes) == 500 and all(outcomes)


def test_transfer_encoding_chunked_is_case_insensitive(certs: Certs, lb: LbProcess) -> None:
    """Transfer-Encoding: CHUNKED is chunked (coding names are case-insensitive)."""
    request = b"POST /upload HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: CHUNKED\r\n\r\n"
    with tls_connect(certs, lb.port) as sock:
        sock.sendall(request + b"5\r\nhello\r\n0\r\n\r\n")
        response = read_response(sock)
    assert response.status == 200, response.body
    assert json.loads(response.body)["length"] == 5


def test_body_unread_by_upstream_leaves_no_desync(certs: Certs, lb: LbProcess) -> None:
    """A 1 MiB POST answered without reading the body: next request works, or close announced."""
    with tls_connect(certs, lb.port) as sock:
        head = b"POST /status/201 HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 1048576\r\n\r\n"
        sock.sendall(head)
        sock.sendall(b"b" * MiB)
        first = read_response(sock)
        assert first.status == 201
        if announced_close(first):
            assert read_until_closed(sock)[1]
        else:
            sock.sendall(get_request("/status/202"))
            assert read_response(sock).status == 202
