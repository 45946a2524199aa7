"""Flood defences for a downstream HTTP/2 connection, as pure logic on the inbound bytes.

`FrameGuard` reads only the 9-byte frame headers of what a client sends, before the h2 library
parses it, and reports the first abuse it sees: a header block (HEADERS + CONTINUATION) larger
than allowed (CONTINUATION flood), more RST_STREAM frames per second than allowed (rapid reset,
CVE-2023-44487), or more PING/SETTINGS frames per second than allowed (ping/settings flood:
each one makes the server write an ACK). The connection answers a report with GOAWAY
(ENHANCE_YOUR_CALM) and closes.
"""

from __future__ import annotations

from dataclasses import dataclass

FRAME_HEADER_BYTES = 9
CLIENT_PREFACE_BYTES = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WINDOW_S = 1.0

_HEADERS = 0x1
_RST_STREAM = 0x3
_SETTINGS = 0x4
_PING = 0x6
_CONTINUATION = 0x9
_WATCHED = frozenset({_HEADERS, _RST_STREAM, _SETTINGS, _PING, _CONTINUATION})
_FLAG_ACK = 0x1
_FLAG_END_HEADERS = 0x4


@dataclass(frozen=True, slots=True)
class FloodLimits:
    """What one client connection may send."""

    max_header_block_bytes: int
    max_resets_per_second: int
    max_control_frames_per_second: int


class FrameGuard:
    """Scans frame headers of inbound bytes; `feed` returns a description of abuse, or None."""

    __slots__ = (
        "_control",
        "_partial",
        "_preface_left",
        "_resets",
        "_skip",
        "_window_start",
        "block_bytes",
        "block_started",
        "limits",
    )

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._preface_left = CLIENT_PREFACE_BYTES
        self._skip = 0  # payload bytes of the current frame still to pass over
        self._partial = b""  # a frame header split across reads
        self.block_bytes = 0  # size of the header block being received (0: none open)
        self.block_started = 0.0  # when that block's HEADERS frame arrived
        self._window_start = 0.0
        self._resets = 0
        self._control = 0

    def feed(self, data: bytes, now: float) -> str | None:
        """Account for `data` (received at `now`, in seconds); the first abuse found, or None."""
        pos = 0
        end = len(data)
        if self._preface_left:
            taken = min(self._preface_left, end)
            self._preface_left -= taken
            pos = taken
        while pos < end:
            if self._skip:
                taken = min(self._skip, end - pos)
                self._skip -= taken
                pos += taken
                continue
            if self._partial or end - pos < FRAME_HEADER_BYTES:
                needed = FRAME_HEADER_BYTES - len(self._partial)
                self._partial += data[pos : pos + needed]
                pos += needed
                if len(self._partial) < FRAME_HEADER_BYTES:
                    return None
                header, self._partial = self._partial, b""
                problem = self._frame(header, 0, now)
                if problem is not None:
                    return problem
                continue
            # A whole frame header in `data`: the usual case, without a call unless the
            # frame is one the guard counts.
            kind = data[pos + 3]
            length = data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]
            if (
                kind == _HEADERS
                and data[pos + 4] & _FLAG_END_HEADERS
                and length <= self.limits.max_header_block_bytes
                and not (self.block_bytes or self.block_started)
            ):
                self._skip = length  # a whole header block in one frame, within the limit
            elif kind in _WATCHED:
                problem = self._frame(data, pos, now)
                if problem is not None:
                    return problem
            else:
                self._skip = length
            pos += FRAME_HEADER_BYTES
        return None

    def _frame(self, buf: bytes, at: int, now: float) -> str | None:
        length = buf[at] << 16 | buf[at + 1] << 8 | buf[at + 2]
        kind = buf[at + 3]
        flags = buf[at + 4]
        self._skip = length
        if kind in (_HEADERS, _CONTINUATION):
            return self._header_block(kind, flags, length, now)
        if kind == _RST_STREAM:
            self._roll(now)
            self._resets += 1
            if self._resets > self.limits.max_resets_per_second:
                return (
                    f"more than {self.limits.max_resets_per_second} RST_STREAM frames in a "
                    "second (rapid reset)"
                )
        elif kind in (_PING, _SETTINGS) and not flags & _FLAG_ACK:
            self._roll(now)
            self._control += 1
            if self._control > self.limits.max_control_frames_per_second:
                return (
                    f"more than {self.limits.max_control_frames_per_second} PING/SETTINGS frames "
                    "in a second (ping/settings flood)"
                )
        return None

    def _header_block(self, kind: int, flags: int, length: int, now: float) -> str | None:
        if kind == _HEADERS:
            self.block_bytes = length
            self.block_started = now
        else:
            self.block_bytes += length  # a CONTINUATION out of place is h2's protocol error
        if self.block_bytes > self.limits.max_header_block_bytes:
            return (
                f"a header block larger than {self.limits.max_header_block_bytes} bytes "
                "(CONTINUATION flood)"
            )
        if flags & _FLAG_END_HEADERS:
            self.block_bytes = 0
            self.block_started = 0.0
        return None

    def _roll(self, now: float) -> None:
        if now - self._window_start >= WINDOW_S:
            self._window_start = now
            self._resets = 0
            self._control = 0
