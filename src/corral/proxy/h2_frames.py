"""The writing half of a downstream HTTP/2 connection: the frames its streams ask for (HEADERS,
DATA within the flow-control windows, END_STREAM, RST_STREAM, WINDOW_UPDATE), batched so the
frames of one loop iteration leave in one TLS write, and h2's refusal of a stream's frame turned
into a reset of that stream (never a silent loss of the rest of a response)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from corral.proxy.constants import WRITE_HIGH_WATER_BYTES
from corral.proxy.h2_fields import Fields

if TYPE_CHECKING:
    from corral.proxy.engine import Engine
    from corral.proxy.h2_machine import ServerH2Connection
    from corral.proxy.h2_stream import H2Stream


class H2FrameWriter:
    """Mixed into `Http2Connection`: everything its streams send."""

    __slots__ = ("batch_depth", "flush_handle", "queued_bytes", "tails")
    batch_depth: int  # open begin_batch() calls
    closed: bool  # the transport is gone
    dead: bool  # no more frames are produced
    client_ip: bytes
    engine: Engine
    flush_handle: asyncio.Handle | None
    h2: ServerH2Connection
    queued_bytes: int  # DATA handed to h2 since the last write
    streams: dict[int, H2Stream]
    tails: list[H2Stream]  # streams holding back a body piece until end_batch
    transport: asyncio.Transport

    def send_headers(self, stream_id: int, fields: Fields, *, end: bool) -> None:
        """A HEADERS frame (informational, response or trailers)."""
        if self.dead:
            return
        try:
            self.h2.send_headers(stream_id, fields, end_stream=end)
        except H2Error as exc:
            self._stream_failed(stream_id, f"cannot send HEADERS: {exc}")
            return
        self._output()

    def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> int:
        """Send as much of `data` as the flow-control windows allow; returns how much. `end`:
        END_STREAM on the last frame, if all of `data` fits."""
        if self.dead:
            return len(data)  # nobody will read it
        h2 = self.h2
        try:
            size = min(h2.local_flow_control_window(stream_id), len(data))
            if size <= 0:
                return 0
            frame = h2.max_outbound_frame_size
            if size == len(data) and size <= frame:
                h2.send_data(stream_id, data, end_stream=end)
            else:
                view = memoryview(data)
                last = end and size == len(data)
                for start in range(0, size, frame):
                    stop = min(start + frame, size)
                    h2.send_data(
                        stream_id, bytes(view[start:stop]), end_stream=last and stop == size
                    )
        except H2Error as exc:
            self._stream_failed(stream_id, f"cannot send DATA: {exc}")
            return len(data)  # nothing more goes to this stream
        self.queued_bytes += size
        if self.queued_bytes >= WRITE_HIGH_WATER_BYTES:
            self._write()  # bodies go out now, so the socket's backpressure is seen in time
        else:
            self._output()
        return size

    def end_stream(self, stream_id: int, trailers: Fields | None) -> None:
        """END_STREAM: on trailing HEADERS, or an empty DATA frame."""
        if self.dead:
            return
        try:
            if trailers:
                self.h2.send_headers(stream_id, trailers, end_stream=True)
            else:
                self.h2.end_stream(stream_id)
        except H2Error as exc:
            self._stream_failed(stream_id, f"cannot end the stream: {exc}")
            return
        self._output()

    def _stream_failed(self, stream_id: int, problem: str) -> None:
        """h2 refused a frame of a stream: say so, and reset the stream (INTERNAL_ERROR) rather
        than let its client wait for the rest of a response that will not come."""
        self.engine.note_error(f"HTTP/2 stream {stream_id} of {self.client_ip.decode()}: {problem}")
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.cancel(ErrorCodes.INTERNAL_ERROR)
        else:
            self.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        """RST_STREAM."""
        if self.dead:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except H2Error:
            return
        self._output()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Request bytes were taken: open the client's windows again (WINDOW_UPDATE)."""
        if self.dead:
            return
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except H2Error:
            return
        self._output()

    def begin_batch(self) -> None:
        """Collect frames until `end_batch` (one write per read)."""
        self.batch_depth += 1

    def end_batch(self) -> None:
        """Write the frames collected (at the end of this loop iteration)."""
        self.batch_depth -= 1
        if not self.batch_depth:
            if self.tails:
                tails, self.tails = self.tails, []
                for stream in tails:
                    stream.release_tail()
            self._output()

    def hold_tail(self, stream: H2Stream) -> None:
        """`stream` holds back a body piece until the batch ends."""
        self.tails.append(stream)

    # -- output ----------------------------------------------------------------------------------
    def _output(self) -> None:
        # Frames of every stream produced in one loop iteration (many upstream responses arrive
        # together under load) leave in one TLS write: the write, not h2, is the expensive part.
        if not self.batch_depth and self.flush_handle is None and not self.dead:
            self.flush_handle = self.engine.loop.call_soon(self._write)

    def _write(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        self.queued_bytes = 0
        data = self.h2.data_to_send()
        if data and not self.closed and not self.transport.is_closing():
            self.transport.write(data)
