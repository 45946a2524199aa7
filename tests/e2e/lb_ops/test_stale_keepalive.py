"""A pooled upstream connection that the endpoint closed as it was reused is retried once on a
fresh connection to the same endpoint (the single-endpoint case), not answered 502."""

from __future__ import annotations

import socket
import threading

from tests.e2e.lb.clients import https_client
from tests.e2e.lb.conftest import StartLb
from tests.e2e.lb.harness import Certs, lb_config
from tests.support.net import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class DropsSecondRequest(threading.Thread):
    """Answers the first request on each connection, then closes the connection without
    answering the next one (an idle keep-alive connection closing under a new request)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.connections = 0
        self.answered = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            conn.sendall(OK)
            self.answered += 1
            conn.recv(65536)  # the next request on this connection: dropped, connection closed

    def close(self) -> None:
        self.server.close()


def test_dead_pooled_connection_is_retried_on_a_fresh_one(certs: Certs, start_lb: StartLb) -> None:
    """Every GET gets 200 although each reused upstream connection dies under its request."""
    backend = DropsSecondRequest()
    backend.start()
    try:
        lb = start_lb(lb_config(certs, [f"127.0.0.1:{backend.port}"]))
        with https_client(certs, lb.port) as client:
            statuses = [client.get("/").status_code for _ in range(5)]
        assert statuses == [200] * 5
        assert backend.answered == 5
        assert backend.connections >= 5  # each retry used a new connection
    finally:
        backend.close()
