"""A backend whose every response is chunked and ends with trailers (h11 over asyncio).

`python -m tests.e2e.lb_h2.trailer_backend --port P`; `GET /any` answers 200 with the body
`trailers follow\n` and the trailers `x-checksum: 1234` and `grpc-status: 0`.
"""

from __future__ import annotations

import argparse
import asyncio

import h11

BODY = b"trailers follow\n"
TRAILERS = [("x-checksum", "1234"), ("grpc-status", "0")]


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer requests on one keep-alive connection until the peer leaves."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.EndOfMessage):
                response = h11.Response(
                    status_code=200,
                    headers=[
                        ("Content-Type", "text/plain"),
                        ("Transfer-Encoding", "chunked"),
                        ("Trailer", "x-checksum, grpc-status"),
                    ],
                )
                writer.write(conn.send(response) or b"")
                writer.write(conn.send(h11.Data(data=BODY)) or b"")
                writer.write(conn.send(h11.EndOfMessage(headers=TRAILERS)) or b"")
                await writer.drain()
                conn.start_next_cycle()
    except (h11.ProtocolError, ConnectionError):
        return
    finally:
        writer.close()


async def main(port: int) -> None:
    """Serve on 127.0.0.1:port until killed."""
    server = await asyncio.start_server(serve_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="chunked responses with trailers")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
