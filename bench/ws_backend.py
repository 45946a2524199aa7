"""The WebSocket backend of the idle-WebSocket measurement: accepts any upgrade request with a
`101 Switching Protocols` (RFC 6455 accept token) and then echoes whatever arrives, for as many
connections as it is given. Run as `python -m bench.ws_backend --port P`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import resource
import sys

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
MAX_HEAD_BYTES = 16 * 1024


def accept_token(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + WEBSOCKET_GUID).digest())


def switching_protocols(head: bytes) -> bytes:
    """The 101 answer to an upgrade request head."""
    key = b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_token(key) + b"\r\n\r\n"
    )


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the upgrade, then echo until the peer closes."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD_BYTES:
            return
        writer.write(switching_protocols(head))
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    """Serve on 127.0.0.1:port until killed."""
    server = await asyncio.start_server(serve_one, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main(args.port))
    except KeyboardInterrupt:
        sys.exit(0)
