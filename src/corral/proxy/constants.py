"""Numbers and byte strings the connection modules share (each defined here once)."""

from __future__ import annotations

from typing import Final

# A transport's write buffer above this pauses whoever fills it (the upstream, or the client).
WRITE_HIGH_WATER_BYTES: Final = 64 * 1024
# While a worker drains (reload, shutdown), idle keep-alive connections close after this
# (last_active is stamped with the engine's coarse clock, up to one tick (<= 1 s) behind: 2 s of
# it means at least 1 s of real idleness, so a client pausing briefly is not cut mid-thought).
DRAIN_IDLE_CLOSE_S: Final = 2.0
# The end of a chunked body.
LAST_CHUNK: Final = b"0\r\n\r\n"
# Request body bytes an exchange keeps while it waits for an upstream connection before the
# client is paused, and the most it keeps to replay the request on another endpoint.
REPLAY_LIMIT_BYTES: Final = 64 * 1024
# A response to a replayable idempotent request with a Content-Length up to this size is held
# until it is complete: if its endpoint breaks between the head and the end of the body, nothing
# has reached the client yet and the request is retried on another endpoint. Larger responses,
# and responses without a Content-Length (streams, watches), are relayed as they arrive.
HOLD_LIMIT_BYTES: Final = 64 * 1024
