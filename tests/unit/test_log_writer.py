"""Log output off the event loop: a reader that stalls never blocks the caller, memory stays
bounded, and error lines are rate-limited."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from corral.proxy.access_log import AccessLog
from corral.proxy.log_writer import ErrorLog, LogWriter
from tests.support.net import wait_until
from tests.unit.proxy_harness import Harness, RecordingWriter, harness_fixture


@pytest.fixture
def full_pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose buffer is already full (nobody reads it), its write end blocking."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


def returns_promptly(call: Callable[[], None]) -> bool:
    """Run `call` in a thread; whether it returned within a few seconds (it blocks forever
    when it writes to the full pipe itself)."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(5.0)
    return not thread.is_alive()


def drain(fd: int) -> bytes:
    """Read what is in a pipe now (non-blocking)."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while True:
            chunks.append(os.read(fd, 1 << 20))
    except BlockingIOError:
        pass
    return b"".join(chunks)


def test_writing_to_a_stalled_pipe_does_not_block(full_pipe: tuple[int, int]) -> None:
    """Lines for a pipe nobody reads are queued and the caller returns at once; once the reader
    reads, the lines arrive in order."""
    read_end, write_end = full_pipe
    writer = LogWriter(write_end)
    lines = [b"line %d\n" % i for i in range(1000)]
    def write_all() -> None:
        for line in lines:
            writer.write(line)

    assert returns_promptly(write_all)
    received = bytearray()

    def arrived() -> bool:
        received.extend(drain(read_end))
        return bytes(received).endswith(lines[-1])

    wait_until(arrived, timeout=10, what="the queued lines to reach the pipe")
    assert bytes(received).lstrip(b"x") == b"".join(lines)
    writer.close()


def test_pending_output_is_bounded(full_pipe: tuple[int, int]) -> None:
    """Beyond max_pending_bytes waiting, output is dropped and counted, not kept."""
    _, write_end = full_pipe
    writer = LogWriter(write_end, max_pending_bytes=10_000)
    for _ in range(100):
        writer.write(b"y" * 1000)
    assert writer.pending_bytes <= 10_000 + 65536  # plus what the thread holds mid-write
    assert writer.dropped_bytes >= 100_000 - 10_000 - 65536
    writer.close(timeout_s=0.1)


def test_access_log_to_a_stalled_stdout_does_not_block(
    full_pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access log's flush (the engine's tick) returns even when stdout is a full pipe."""
    _, write_end = full_pipe
    monkeypatch.setattr("sys.stdout", os.fdopen(os.dup(write_end), "w"))
    log = AccessLog("stdout")
    for _ in range(2000):  # several flushes' worth (FLUSH_AT_BYTES)
        log.log(b"10.0.0.1", b"GET", b"/a?token=x", "HTTP/1.1", 200, 2, "10.0.0.9:80", 0.0)
    assert returns_promptly(log.flush)
    assert log.writer is not None
    log.writer.close(timeout_s=0.1)


def test_error_lines_are_rate_limited() -> None:
    """At most lines_per_second error lines a second; the rest are counted in one line when the
    second is over. Notices (endpoint up/down) are never dropped."""
    now = [100.0]
    writer = RecordingWriter()
    log = ErrorLog(writer, lines_per_second=5, clock=lambda: now[0])
    for i in range(1000):
        log.error(f"rejected request {i}")
    log.notice("endpoint 10.0.0.9:80 of 'app' is down")
    assert len(writer.lines) == 6
    now[0] += 1.0
    log.flush()
    assert writer.lines[-1].endswith("995 more error line(s) not written (at most 5 per second)")
    log.error("next second")
    assert writer.lines[-1].endswith("corral lb: next second")


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from harness_fixture()


def test_engine_error_lines_are_rate_limited(h: Harness) -> None:
    """A flood of rejected requests does not write an error line each; the lines left out are
    counted once the second is over."""
    for _ in range(500):
        client = h.http1_client()
        client.send(b"NOT HTTP\r\n\r\n")
        assert client.closed
    rejected = h.error_lines("rejected request")
    assert 0 < len(rejected) <= h.engine.error_log.lines_per_second
    h.advance(1.5)
    assert h.error_lines(r"\d+ more error line\(s\) not written")


def test_blocking_descriptor_stays_blocking(full_pipe: tuple[int, int]) -> None:
    """The writer leaves the descriptor's flags alone (stdout is shared with other processes)."""
    _, write_end = full_pipe
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    writer = LogWriter(write_end)
    writer.write(b"z\n")
    assert fcntl.fcntl(write_end, fcntl.F_GETFL) == flags
    writer.close(timeout_s=0.1)

