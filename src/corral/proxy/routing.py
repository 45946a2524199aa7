"""Which virtual server answers a request, and what a redirect says (pure, table-tested)."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.config.lb import Server
from corral.proxy.forwarding import forwarded_constants
from corral.proxy.response_headers import ResponseHeaders, response_headers
from corral.proxy.upstream import UpstreamPool


@dataclass(slots=True)
class ServerRoute:
    """A configured server block, resolved for the data path."""

    names: list[str]
    scheme: str  # "https" on a TLS listener, else "http"
    port: int
    pool: UpstreamPool | None
    redirect_status: int
    redirect_parts: tuple[bytes, bytes] | None  # Location = parts[0] + request_uri + parts[1]
    redirect_uses_uri: bool
    read_timeout: float
    send_timeout: float
    response_headers: ResponseHeaders | None = None  # None: responses pass unchanged
    pass_h2c_upgrade: bool = False  # forward `Upgrade: h2c` (refused by default)
    listener_lines: bytes = field(init=False)
    default_host: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.listener_lines = forwarded_constants(self.scheme, self.port)
        self.default_host = self.names[0].encode()

    def redirect_location(self, request_uri: bytes) -> bytes:
        """The Location of this server's redirect for `request_uri` (never from the Host)."""
        assert self.redirect_parts is not None
        before, after = self.redirect_parts
        return before + request_uri + after if self.redirect_uses_uri else before


def build_route(server: Server, pools: dict[str, UpstreamPool]) -> ServerRoute:
    """Resolve a server block against the worker's upstream pools."""
    _, port = server.address
    parts: tuple[bytes, bytes] | None = None
    uses_uri = False
    if server.redirect is not None:
        template = server.redirect.replace("$server_name", server.names[0])
        before, _, after = template.partition("$request_uri")
        uses_uri = "$request_uri" in template
        parts = (before.encode(), after.encode())
    return ServerRoute(
        names=server.names,
        scheme="https" if server.tls is not None else "http",
        port=port,
        pool=pools[server.proxy_pass] if server.proxy_pass is not None else None,
        redirect_status=server.redirect_status,
        redirect_parts=parts,
        redirect_uses_uri=uses_uri,
        read_timeout=server.read_timeout,
        send_timeout=server.send_timeout,
        response_headers=response_headers(server),
        pass_h2c_upgrade=server.pass_h2c_upgrade,
    )


class Router:
    """The server blocks sharing one listener; chooses by Host, first is the default."""

    __slots__ = ("by_name", "default")

    def __init__(self, routes: list[ServerRoute]) -> None:
        self.default = routes[0]
        self.by_name: dict[bytes, ServerRoute] = {}
        for route in routes:
            for name in route.names:
                self.by_name.setdefault(name.encode(), route)

    def route(self, host: bytes | None) -> ServerRoute:
        """The server for a Host header value (port and case ignored)."""
        if host is None or len(self.by_name) <= 1:
            return self.default
        name = host.rsplit(b":", 1)[0] if host[-1:] != b"]" else host
        return self.by_name.get(name.lower(), self.default)
