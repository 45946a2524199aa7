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
"""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import InvalidBodyLengthError, ProtocolError, TooManyStreamsError
from h2.stream import StreamState

from corral.proxy.h2_hpack import StaticTableEncoder

# The header block is checked (and cookies joined) by h2_fields.parse_request in one pass,
# instead of by h2's generator chain; h2 still checks content-length and the frames' order.
H2_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,  # the streams build lower-case, connection-free fields
    normalize_outbound_headers=False,
)

# States a stream is in after h2 accepted a frame's place in the protocol (its content can still
# be refused): the stream exists for the peer, so a reset is the right answer.
_ACCEPTED_STATES = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


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

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[Event]]:
        try:
            result: tuple[list[Any], list[Event]] = super()._receive_headers_frame(frame)
        except TooManyStreamsError:
            raise
        except ProtocolError as exc:
            return self._malformed(frame.stream_id, exc)
        return result

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
