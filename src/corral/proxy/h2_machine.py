"""The h2 state machine as the proxy runs it: a malformed request is a stream error.

RFC 9113 §8.1.1: a request whose fields break HTTP/2's rules (upper-case names, connection-specific
fields, missing or repeated pseudo-headers, a `content-length` that is not a number or that the
DATA frames contradict, trailers without END_STREAM) is *malformed*, and the answer is a stream
error: RST_STREAM (PROTOCOL_ERROR) on that stream only, as NGINX does. The h2 library raises a
`ProtocolError` for these and turns every one into a connection error (GOAWAY), which would end
every other stream of the browser's connection. `ServerH2Connection` catches them where they
are raised for one stream's content, resets that stream and reports `RequestMalformed`; errors
of the connection itself (bad frames, HPACK, flow control, too many streams) stay connection
errors.

The rest trims h2's per-frame overhead without changing what it does: options and the no-op
logger as plain attributes (h2 reads them several times per frame); a received HEADERS frame, and
the proxy's own HEADERS and DATA, through h2's state machines, frames and checks but without its
passes over the fields for `str` conversion and header validation (off); the open streams counted
for the concurrency limit only when the count could reach it; no `repr()` of every received frame
for a log that is off; hpack's decoder with indexed fields inline (h2_hpack). Each override says
which h2 method it stands for; h2 is pinned, and they follow its 4.x code.
"""

from __future__ import annotations

from typing import Any, cast

from h2.config import DummyLogger, H2Configuration
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import Event, TrailersReceived
from h2.exceptions import (
    DenialOfServiceError,
    FlowControlError,
    FrameTooLargeError,
    InvalidBodyLengthError,
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
    TooManyStreamsError,
)
from h2.stream import STREAM_OPEN, H2StreamStateMachine, StreamInputs, StreamState
from h2.utilities import HeaderValidationFlags
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from corral.proxy.h2_hpack import IndexedFastDecoder, StaticTableEncoder


class _Silent(DummyLogger):
    """h2's logger when nothing is logged: `"".format` takes any arguments and does nothing
    at C speed (h2 calls its logger a dozen times per request)."""

    debug = trace = "".format  # type: ignore[assignment]


class ServerConfiguration(H2Configuration):
    """The proxy's h2 options as plain class attributes instead of h2's validating descriptors
    (each read of one is a Python call).

    The header block is checked (and cookies joined) by h2_fields.parse_request in one pass,
    instead of by h2's generator chain; h2 still checks content-length and the frames' order.
    """

    client_side = False
    header_encoding = None
    validate_inbound_headers = False
    normalize_inbound_headers = False
    validate_outbound_headers = False  # the streams build lower-case, connection-free fields
    normalize_outbound_headers = False
    split_outbound_cookies = False
    logger = _Silent()

    def __init__(self) -> None:  # the class attributes are the options
        pass


H2_CONFIG = ServerConfiguration()
# h2 reads header validation flags only to validate or normalise fields, both off here.
_NO_VALIDATION = HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=True, is_push_promise=False
)
_CLOSED = StreamState.CLOSED

# States a stream is in after h2 accepted a frame's place in the protocol (its content can still
# be refused): the stream exists for the peer, so a reset is the right answer.
_ACCEPTED_STATES = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
_INFORMATIONAL_END_SENT = "Cannot set END_STREAM on informational responses."
_INFORMATIONAL_END_RECEIVED = "Cannot set END_STREAM on informational responses"


def _headers_input(
    machine: H2StreamStateMachine, headers: Any, end_stream: bool, sending: bool
) -> list[Event]:
    """A header block's input to its stream's state machine, as h2's stream `send_headers`
    (`sending`) or `receive_headers` gives it: informational (h2's `is_informational_response`:
    a `:status` of 1xx among the leading pseudo-headers, refused with END_STREAM) or not; the
    machine's events. One plain function call per HEADERS frame."""
    informational = False
    for name, value in headers:  # h2's is_informational_response
        if name[:1] != b":":
            break
        if name == b":status":
            informational = value[:1] == b"1"
            break
    if informational:
        if end_stream:  # h2's two messages: with a full stop when sending, without on receipt
            raise ProtocolError(_INFORMATIONAL_END_SENT if sending else _INFORMATIONAL_END_RECEIVED)
        return machine.process_input(
            StreamInputs.SEND_INFORMATIONAL_HEADERS
            if sending
            else StreamInputs.RECV_INFORMATIONAL_HEADERS
        )
    return machine.process_input(
        StreamInputs.SEND_HEADERS if sending else StreamInputs.RECV_HEADERS
    )


class RequestMalformed(Event):
    """A stream's request was malformed and has been reset (RST_STREAM PROTOCOL_ERROR)."""

    def __init__(self, stream_id: int, detail: str) -> None:
        self.stream_id = stream_id
        self.detail = detail

    def __repr__(self) -> str:
        return f"<RequestMalformed stream_id:{self.stream_id}, detail:{self.detail}>"


def without_values(error: Exception) -> str:
    """h2's message for `error`, cut before any header value it quotes (values may carry
    credentials, which never reach a log)."""
    text = str(error)
    cut = text.find(" value")
    return text[: cut + len(" value")] + " (not logged)" if cut >= 0 else text


class ServerH2Connection(H2Connection):
    """h2's server connection with malformed requests as stream errors (see the module)."""

    def __init__(self) -> None:
        super().__init__(config=H2_CONFIG)
        self.encoder = StaticTableEncoder()  # h2_hpack: no dynamic table for responses
        self.decoder = IndexedFastDecoder(self.DEFAULT_MAX_HEADER_LIST_SIZE)

    def send_headers(
        self,
        stream_id: int,
        headers: Any,
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        """h2's `send_headers` for the proxy's own header blocks on an open stream (a list of
        `bytes` fields, pseudo-headers first, no priority): the connection's and the stream's
        state machines, the frames and the encoder as h2's, without h2's passes over the fields
        that only convert `str` fields, feed its header validation (off) or look for a
        `:method` a response has not got. Anything else goes to h2's own."""
        stream = self.streams.get(stream_id)
        if stream is None or not (
            priority_weight is None and priority_depends_on is None and priority_exclusive is None
        ):
            super().send_headers(
                stream_id,
                headers,
                end_stream,
                priority_weight,
                priority_depends_on,
                priority_exclusive,
            )
            return
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        machine = stream.state_machine
        _headers_input(machine, headers, end_stream, True)
        frames = cast(
            "list[Frame]",
            stream._build_headers_frames(
                headers, self.encoder, HeadersFrame(stream_id), _NO_VALIDATION
            ),
        )
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            frames[0].flags.add("END_STREAM")
        if machine.trailers_sent and not end_stream:
            raise ProtocolError("Trailers must have END_STREAM set.")
        stream.request_method = None  # what h2 finds in a block without `:method`
        self._prepare_for_sending(frames)

    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: Any = None,
    ) -> None:
        """h2's `send_data` for `bytes` without padding on an open stream, the stream looked up
        once (h2 looks it up twice for its flow-control check); anything else goes to h2's."""
        stream = self.streams.get(stream_id)
        if stream is None or pad_length is not None or not isinstance(data, bytes):
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        size = len(data)
        window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
        if size > 0 and size > window:
            raise FlowControlError(f"Cannot send {size} bytes, flow control window is {window}")
        if size > self.max_outbound_frame_size:
            raise FrameTooLargeError(
                f"Cannot send frame size {size}, max frame size is {self.max_outbound_frame_size}"
            )
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        self._prepare_for_sending(stream.send_data(data, end_stream))
        self.outbound_flow_control_window -= size

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        """h2's, without a generator per call for the usual single frame."""
        if not frames:
            return
        if len(frames) == 1:
            frame = frames[0]
            self._data_to_send += frame.serialize()
            assert frame.body_len <= self.max_outbound_frame_size
            return
        super()._prepare_for_sending(frames)

    def _open_streams(self, remainder: int) -> int:
        """h2's count of open streams with `stream_id % 2 == remainder`, dropping closed ones
        as h2 does, with the stream states read directly."""
        count = 0
        closed: list[int] = []
        for stream_id, stream in self.streams.items():
            state = stream.state_machine.state
            if state is _CLOSED:
                closed.append(stream_id)
            elif STREAM_OPEN[state] and stream_id % 2 == remainder:
                count += 1
        for stream_id in closed:
            self._closed_streams[stream_id] = self.streams.pop(stream_id).closed_by
        return count

    def _receive_frame(self, frame: Frame) -> list[Event]:
        """h2's `_receive_frame` without `repr(frame)` for its (silent) trace log."""
        events: list[Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as exc:
            if not self._stream_is_closed_by_reset(exc.stream_id):
                raise
            reset = RstStreamFrame(exc.stream_id)
            reset.error_code = exc.error_code
            self._prepare_for_sending([reset])
            events = exc._events
        except StreamIDTooLowError as exc:
            if self._stream_is_closed_by_reset(exc.stream_id):
                reset = RstStreamFrame(exc.stream_id)
                reset.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([reset])
                events = []
            elif self._stream_is_closed_by_end(exc.stream_id):
                raise StreamClosedError(exc.stream_id) from exc
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[Event]]:
        try:
            return self._receive_headers(frame)
        except TooManyStreamsError:
            raise
        except ProtocolError as exc:
            return self._malformed(frame.stream_id, exc)

    def _receive_headers(self, frame: HeadersFrame) -> tuple[list[Any], list[Event]]:
        """h2's `_receive_headers_frame` with the stream's `receive_headers` inline. The open
        streams are counted for the concurrency limit only when the connection holds as many
        streams (of any state) as the limit: below that, the count cannot reach it (h2 counts
        on every new stream). The fields go onto the event as the decoder's list (h2 copies
        them through its header validation, which is off)."""
        stream_id = frame.stream_id
        if stream_id not in self.streams:
            limit = self.local_settings.max_concurrent_streams
            if len(self.streams) >= limit:
                value = self.open_inbound_streams
                if value + 1 > limit:
                    raise TooManyStreamsError(f"Max inbound streams is {limit}, {value} open")
        headers = self._decode(frame.data)
        events: list[Event] = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        stream = self._get_or_create_stream(stream_id, AllowedStreamIDs.ODD)
        flags = frame.flags
        end_stream = "END_STREAM" in flags
        machine = stream.state_machine
        stream_events = _headers_input(machine, headers, end_stream, False)
        head: Any = stream_events[0]  # RequestReceived, TrailersReceived, ...: h2 casts too
        if end_stream:
            ended = machine.process_input(StreamInputs.RECV_END_STREAM)
            head.stream_ended = ended[0]
            stream_events += ended
        stream._initialize_content_length(headers)
        if not end_stream and isinstance(head, TrailersReceived):
            raise ProtocolError("Trailers must have END_STREAM set")
        head.headers = headers
        if "PRIORITY" in flags:
            _, p_events = self._receive_priority_frame(frame)
            head.priority_updated = p_events[0]
            stream_events.extend(p_events)
        return [], events + stream_events

    def _decode(self, block: bytes) -> Any:
        """h2's `_decode_headers`: HPACK errors as h2's protocol errors."""
        try:
            return self.decoder.decode(block, raw=True)
        except OversizedHeaderListError as exc:
            raise DenialOfServiceError(f"Oversized header block: {exc}") from exc
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"Error decoding header block: {exc}") from exc

    def _receive_data_frame(self, frame: Any) -> tuple[list[Any], list[Event]]:
        try:
            result: tuple[list[Any], list[Event]] = super()._receive_data_frame(frame)
        except InvalidBodyLengthError as exc:
            frames, events = self._malformed(frame.stream_id, exc)
            if self.state_machine.state is not ConnectionState.CLOSED:
                # The DATA counted against the connection's window: hand it back.
                self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            return frames, events
        return result

    def _malformed(self, stream_id: int, exc: ProtocolError) -> tuple[list[Any], list[Event]]:
        """Reset the stream if the error is about its content; re-raise otherwise."""
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or stream.state_machine.state not in _ACCEPTED_STATES
            or self.state_machine.state is ConnectionState.CLOSED
        ):
            raise exc  # the frame itself was out of place: a connection error
        self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
        return [], [RequestMalformed(stream_id, without_values(exc))]
