"""Helpers shared by the v3 API end-to-end tests (no tests here): an httpx client of a real
`corral server` over its HTTPS listener, login, users, and WebSocket connections."""

from __future__ import annotations

import contextlib
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.e2e.lb.harness import Certs, LbProcess, make_certs
from tests.e2e.server.core_harness import CorralServer
from tests.support.net import free_port

LOGIN_PATH = "/v3-public/localProviders/local?action=login"
USER_PASSWORD = "user-password-123"


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(server: CorralServer, token: str | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx client of the server's HTTPS listener (trusting its CA), optionally with a
    Bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.client(base_url=server.https_url, headers=headers, **kwargs)


def login(server: CorralServer, username: str = "admin", password: str | None = None,
          **fields: Any) -> dict[str, Any]:
    """Log in (token response); returns the token resource including `token`."""
    with api(server) as client:
        response = client.post(LOGIN_PATH, json={
            "username": username, "password": password or server.admin_password, **fields
        })
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def admin_token(server: CorralServer) -> str:
    """A fresh admin token."""
    return str(login(server)["token"])


def create_user(server: CorralServer, admin: str, *, is_admin: bool = False,
                **fields: Any) -> tuple[dict[str, Any], str]:
    """A new user (and a token for it): (user resource, token)."""
    username = unique("user")
    with api(server, admin) as client:
        response = client.post("/v3/users", json={
            "username": username, "password": USER_PASSWORD, "admin": is_admin, **fields
        })
    assert response.status_code == 201, response.text
    return response.json(), str(login(server, username, USER_PASSWORD)["token"])


def ws_ssl(server: CorralServer) -> ssl.SSLContext:
    """A client TLS context trusting the server's CA."""
    return ssl.create_default_context(cafile=str(server.ca_path))


def ws_connect(server: CorralServer, path: str, token: str | None,
               **kwargs: Any) -> ClientConnection:
    """A WebSocket to the server's HTTPS listener."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection: ClientConnection = connect(
        f"wss://127.0.0.1:{server.https_port}{path}",
        ssl=ws_ssl(server),
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
        **kwargs,
    )
    return connection


def receive_json(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next JSON message (fails after `timeout` seconds)."""
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def corral_lb_config(certs: Certs, port: int, upstream_port: int,
                     read_timeout: str = "900s") -> dict[str, Any]:
    """A `corral lb` config: TLS on 127.0.0.1:`port` (lb.test) in front of one server's
    HTTP port, as in the seeds' topology."""
    return {
        "worker_processes": 1,
        "upstreams": {"corral": {"servers": [f"127.0.0.1:{upstream_port}"]}},
        "servers": [{
            "listen": f"127.0.0.1:{port}",
            "server_name": "lb.test",
            "tls": {"certificates": [{"cert": str(certs.main.chain),
                                      "key": str(certs.main.key)}]},
            "proxy_pass": "corral",
            "read_timeout": read_timeout,
        }],
    }


@contextlib.contextmanager
def running_corral_lb(directory: Path, upstream_port: int,
                      read_timeout: str = "900s") -> Iterator[tuple[int, Certs]]:
    """`corral lb` in front of a server until the block ends: (its TLS port, its certs)."""
    certs = make_certs(directory)
    port = free_port()
    lb_dir = directory / "lb"
    lb_dir.mkdir()
    lb = LbProcess(corral_lb_config(certs, port, upstream_port, read_timeout), lb_dir)
    try:
        lb.wait_listening()
        yield port, certs
    finally:
        lb.stop()
        print(f"--- corral lb output ---\n{lb.output()}")
