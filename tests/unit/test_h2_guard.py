"""The HTTP/2 flood guard: frame headers in, the first abuse out (pure, no sockets)."""

from __future__ import annotations

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from corral.proxy.h2_guard import CLIENT_PREFACE_BYTES, FloodLimits, FrameGuard

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LIMITS = FloodLimits(
    max_header_block_bytes=1000, max_resets_per_second=5, max_control_frames_per_second=3
)


def wire(*frames: Frame) -> bytes:
    return b"".join(frame.serialize() for frame in frames)


def guard_after_preface() -> FrameGuard:
    guard = FrameGuard(LIMITS)
    assert guard.feed(PREFACE, 0.0) is None
    return guard


def headers(stream_id: int, size: int, *, end_headers: bool) -> HeadersFrame:
    frame = HeadersFrame(stream_id, data=b"x" * size)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame


def continuation(stream_id: int, size: int, *, end_headers: bool) -> ContinuationFrame:
    frame = ContinuationFrame(stream_id, data=b"x" * size)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame


def test_preface_length_matches_rfc() -> None:
    """The guard skips exactly the 24-byte client connection preface."""
    assert len(PREFACE) == CLIENT_PREFACE_BYTES


def test_ordinary_traffic_passes() -> None:
    """Settings, a request, a large DATA frame and an ACKed ping raise nothing."""
    guard = guard_after_preface()
    ping_ack = PingFrame(0, opaque_data=b"12345678")
    ping_ack.flags.add("ACK")
    data = wire(
        SettingsFrame(0),
        headers(1, 300, end_headers=True),
        DataFrame(1, data=b"d" * 16000),
        ping_ack,
    )
    assert guard.feed(data, 0.1) is None
    assert guard.block_bytes == 0


def test_frames_split_at_every_byte_are_still_parsed() -> None:
    """A CONTINUATION flood is found even when it arrives one byte per read."""
    guard = guard_after_preface()
    data = wire(
        headers(1, 400, end_headers=False),
        continuation(1, 400, end_headers=False),
        continuation(1, 400, end_headers=False),
    )
    problems = [guard.feed(data[i : i + 1], 0.0) for i in range(len(data))]
    found = [p for p in problems if p is not None]
    assert found and "CONTINUATION flood" in found[0]


def test_header_block_within_limit_across_continuations() -> None:
    """HEADERS + CONTINUATION totalling the limit pass, and the block closes at END_HEADERS."""
    guard = guard_after_preface()
    data = wire(headers(1, 500, end_headers=False), continuation(1, 500, end_headers=True))
    assert guard.feed(data, 0.0) is None
    assert guard.block_bytes == 0 and guard.block_started == 0.0


def test_open_header_block_is_visible_for_its_timeout() -> None:
    """An unfinished header block records when it started (for client_header_timeout)."""
    guard = guard_after_preface()
    assert guard.feed(wire(headers(1, 10, end_headers=False)), 42.0) is None
    assert guard.block_started == 42.0


def test_header_block_over_limit_is_a_flood() -> None:
    """One byte over the header block limit is reported."""
    guard = guard_after_preface()
    data = wire(headers(1, 600, end_headers=False), continuation(1, 401, end_headers=True))
    problem = guard.feed(data, 0.0)
    assert problem is not None and "1000 bytes" in problem


def test_rapid_reset_over_the_rate_is_reported() -> None:
    """Five resets in a second pass; the sixth is a rapid reset."""
    guard = guard_after_preface()
    assert guard.feed(wire(*(RstStreamFrame(2 * i + 1) for i in range(5))), 10.0) is None
    problem = guard.feed(wire(RstStreamFrame(11)), 10.5)
    assert problem is not None and "rapid reset" in problem


def test_reset_budget_renews_each_second() -> None:
    """Five resets per second for three seconds stay within the limit."""
    guard = guard_after_preface()
    for second in range(3):
        frames = wire(*(RstStreamFrame(2 * i + 1) for i in range(5)))
        assert guard.feed(frames, 10.0 + second) is None


def test_ping_flood_is_reported_but_acks_are_free() -> None:
    """PING ACKs never count; a fourth PING within a second does."""
    guard = guard_after_preface()
    ack = PingFrame(0, opaque_data=b"12345678")
    ack.flags.add("ACK")
    assert guard.feed(wire(*[ack] * 10), 0.0) is None
    assert guard.feed(wire(*[PingFrame(0, opaque_data=b"12345678")] * 3), 0.0) is None
    problem = guard.feed(wire(PingFrame(0, opaque_data=b"12345678")), 0.2)
    assert problem is not None and "ping/settings flood" in problem


def test_settings_flood_is_reported() -> None:
    """SETTINGS frames count with PINGs against the control-frame rate."""
    guard = guard_after_preface()
    problem = guard.feed(wire(*[SettingsFrame(0)] * 4), 0.0)
    assert problem is not None and "PING/SETTINGS" in problem
