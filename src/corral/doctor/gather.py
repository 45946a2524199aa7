"""Everything doctor looks at, gathered at once: the slow parts (the WebSocket idle period, the
stream) run alongside the quick ones, so a run takes about `--idle` plus a few seconds."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.doctor import dns, http_probe, tls_probe
from corral.doctor.http_logic import Answer, StreamTiming
from corral.doctor.http_probe import AS_BEHIND_LB, CACERTS_PATH, Echo
from corral.doctor.model import Target
from corral.doctor.nodes_logic import NodeSeen
from corral.doctor.tls_probe import TlsObservation
from corral.doctor.ws_client import Opened, exercise, open_http1, open_http2
from corral.doctor.ws_logic import WsOutcome
from corral.server.diagnostics import ECHO_PATH, HEADERS_PATH

SHELL_PATH = "/v3/shell"
SHELL_SUBPROTOCOL = "base64.channel.k8s.io"
MIN_CACERTS_READS = 3
MIN_SPREAD_REQUESTS = 6
SPREAD_REQUESTS_PER_NODE = 4


@dataclass
class Trust:
    """cacerts as published, and how the served chain verifies against each CA doctor knows."""

    seen: list[tuple[str, str]] = field(default_factory=list)  # (where read, value)
    value: str | None = None  # the value through the load balancer (None: not read)
    read_error: str = ""
    cacerts_error: str | None = None  # against the published CA (None: verified)
    ca_error: str | None = None  # against --ca (when given)
    ca_pem: str = ""  # the --ca file's text
    system_error: str | None = None  # against the system trust store


@dataclass
class Token:
    """The authenticated checks (--token)."""

    api: Answer | None = None
    shell: Opened | None = None
    not_sent: str = ""  # why the token was not sent


@dataclass
class Observations:
    """All doctor saw, for the judge."""

    addresses: list[str] = field(default_factory=list)
    dns_error: str = ""
    tls: TlsObservation | None = None
    trust: Trust = field(default_factory=Trust)
    h2: Answer = field(default_factory=Answer)
    h1: Answer = field(default_factory=Answer)
    redirects: list[tuple[str, str, Answer]] = field(default_factory=list)
    echo: Echo = field(default_factory=lambda: Echo(Answer()))
    websockets: list[WsOutcome] = field(default_factory=list)
    streams: list[StreamTiming] = field(default_factory=list)
    nodes: list[NodeSeen] = field(default_factory=list)
    lb_servers: list[str] = field(default_factory=list)
    token: Token = field(default_factory=Token)


def _verify(target: Target, cadata: str | None = None, cafile: Path | None = None) -> str | None:
    return tls_probe.verify(target.fqdn, target.port, target.timeout_s, cadata=cadata,
                            cafile=cafile)


async def _trust(target: Target) -> Trust:
    trust = Trust()
    reads = max(MIN_CACERTS_READS, 2 * len(target.nodes))
    async with http_probe.client(target) as http:
        for _ in range(reads):
            value, error = await http_probe.cacerts_value(http, target.https_url(CACERTS_PATH))
            if value is None:
                trust.read_error = trust.read_error or error
                continue
            trust.value = value if trust.value is None else trust.value
            trust.seen.append(("the load balancer", value))
        for node in target.nodes:
            value, _ = await http_probe.cacerts_value(http, node + CACERTS_PATH, AS_BEHIND_LB)
            if value is not None:
                trust.seen.append((node, value))
    checks = [asyncio.to_thread(_verify, target)]
    if trust.value:
        checks.append(asyncio.to_thread(_verify, target, trust.value))
    if target.ca_file is not None:
        checks.append(asyncio.to_thread(_verify, target, None, target.ca_file))
        try:
            trust.ca_pem = target.ca_file.read_text()
        except (OSError, UnicodeDecodeError):
            trust.ca_pem = ""
    results = await asyncio.gather(*checks)
    trust.system_error = results[0]
    rest = list(results[1:])
    if trust.value:
        trust.cacerts_error = rest.pop(0)
    if target.ca_file is not None:
        trust.ca_error = rest.pop(0)
    return trust


async def _websocket(target: Target, http2: bool) -> WsOutcome:
    protocol = "HTTP/2" if http2 else "HTTP/1.1"
    context = tls_probe.unverified_context(["h2", "http/1.1"] if http2 else ["http/1.1"])
    if http2:
        opened = await open_http2(target.fqdn, target.port, target.authority, ECHO_PATH,
                                  context, target.timeout_s)
    else:
        opened = await open_http1(target.fqdn, target.port, target.authority, ECHO_PATH,
                                  context, target.timeout_s)
    if opened.session is None:
        return WsOutcome(protocol, opened)
    done = await exercise(opened.session, target.idle_s, target.timeout_s)
    return WsOutcome(protocol, opened, done)


async def _nodes(target: Target,
                 others: list[asyncio.Task[Any]]) -> tuple[list[NodeSeen], list[str]]:
    """Each node directly, then requests through the load balancer once the `others` are done
    (so nothing else takes turns in its round robin meanwhile)."""
    if not target.nodes:
        return [], []
    seen = []
    async with http_probe.client(target) as http:
        for node in target.nodes:
            health = await http_probe.get(http, node + "/healthz")
            echo = await http_probe.echo_headers(http, node + HEADERS_PATH, AS_BEHIND_LB)
            seen.append(NodeSeen(node, health, echo.server))
        await asyncio.wait(others)
        servers = []
        count = max(MIN_SPREAD_REQUESTS, SPREAD_REQUESTS_PER_NODE * len(target.nodes))
        for _ in range(count):
            echo = await http_probe.echo_headers(http, target.https_url(HEADERS_PATH))
            if echo.server:
                servers.append(echo.server)
    return seen, servers


def _token_context(target: Target, trust: Trust) -> tuple[ssl.SSLContext | None, str]:
    """The verifying context for requests that carry the token, or why there is none."""
    if trust.value and trust.cacerts_error is None:
        return tls_probe.verifying_context(trust.value, None), ""
    if target.ca_file is not None and trust.ca_error is None:
        return tls_probe.verifying_context(None, target.ca_file), ""
    if trust.system_error is None:
        return tls_probe.verifying_context(None, None), ""
    return None, "not sent: the served chain does not verify against any CA doctor knows"


async def _token(target: Target, trust_task: asyncio.Task[Trust]) -> Token:
    if not target.token:
        return Token(not_sent="no --token given")
    trust = await trust_task
    context, why = _token_context(target, trust)
    if context is None:
        return Token(not_sent=why)
    bearer = {"Authorization": f"Bearer {target.token}"}
    async with http_probe.client(target, verify=context, headers=bearer) as http:
        api = await http_probe.get(http, target.https_url("/v3/users?me=true"))
    context.set_alpn_protocols(["http/1.1"])
    shell = await open_http1(target.fqdn, target.port, target.authority, SHELL_PATH, context,
                             target.timeout_s, headers=list(bearer.items()),
                             subprotocols=[SHELL_SUBPROTOCOL])
    if shell.session is not None:
        await shell.session.close()
    return Token(api, Opened(None, status=shell.status, error=shell.error))


async def observe(target: Target) -> Observations:
    """Look at everything; stops early when the name does not resolve or TLS fails."""
    seen = Observations()
    if not target.is_address:
        seen.addresses, seen.dns_error = await dns.lookup(target)
        if seen.dns_error:
            return seen
    seen.tls = await asyncio.to_thread(tls_probe.observe, target.fqdn, target.port,
                                       target.timeout_s)
    if seen.tls.error:
        return seen
    async with asyncio.TaskGroup() as group:
        trust = group.create_task(_trust(target))
        h2 = group.create_task(http_probe.ping(target, http2=True))
        h1 = group.create_task(http_probe.ping(target, http2=False))
        redirects = group.create_task(http_probe.redirects(target))
        echo = group.create_task(http_probe.headers_through_lb(target))
        websockets = [group.create_task(_websocket(target, http2)) for http2 in (False, True)]
        streams = [group.create_task(http_probe.stream_timing(target, http2=http2))
                   for http2 in ((False, True) if seen.tls.alpn == "h2" else (False,))]
        token = group.create_task(_token(target, trust))
        quick: list[asyncio.Task[Any]] = [trust, h2, h1, redirects, echo, token, *streams]
        nodes = group.create_task(_nodes(target, quick))
    seen.trust, seen.h2, seen.h1 = trust.result(), h2.result(), h1.result()
    seen.redirects, seen.echo = redirects.result(), echo.result()
    seen.websockets = [task.result() for task in websockets]
    seen.streams = [task.result() for task in streams]
    seen.nodes, seen.lb_servers = nodes.result()
    seen.token = token.result()
    return seen
