"""HTTP requests doctor sends (httpx): GET only, no credentials unless --token, nothing that
changes state. Each function returns what it saw; http_logic says what that means."""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass

import httpx

from corral.doctor.http_logic import Answer, StreamTiming
from corral.doctor.model import Target
from corral.doctor.tls_probe import unverified_context
from corral.server.diagnostics import ECHOED_HEADERS, HEADERS_PATH, SERVER_FIELD, STREAM_PATH

FORGED_HOST = "doctor-forged-host.invalid"  # .invalid never resolves (RFC 2606)
REDIRECT_PROBE_PATH = "/doctor-redirect-probe?from=corral-doctor"
USER_AGENT = "corral-doctor"
CACERTS_PATH = "/v3/settings/cacerts"
# a direct request to a node's plain-HTTP port: what the load balancer would have added
AS_BEHIND_LB = {"X-Forwarded-Proto": "https"}


def client(target: Target, *, http2: bool = False, verify: ssl.SSLContext | None = None,
           headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An httpx client for one kind of request (no redirects followed)."""
    if verify is None:
        verify = unverified_context(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return httpx.AsyncClient(
        http1=True, http2=http2, verify=verify, timeout=target.timeout_s,
        follow_redirects=False, headers={"User-Agent": USER_AGENT, **(headers or {})},
        trust_env=False,
    )


def _error(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}" if str(exc) else "cannot connect"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _answer(response: httpx.Response) -> Answer:
    return Answer(status=response.status_code, location=response.headers.get("location", ""),
                  http_version=response.http_version, body=response.text)


async def get(http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> Answer:
    """One GET; the error instead of raising."""
    try:
        return _answer(await http.get(url, headers=headers))
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return Answer(error=_error(exc))


async def ping(target: Target, *, http2: bool) -> Answer:
    """GET /ping over HTTP/2 (ALPN h2 offered first) or HTTP/1.1 only."""
    async with client(target, http2=http2) as http:
        return await get(http, target.https_url("/ping"))


async def redirects(target: Target) -> list[tuple[str, str, Answer]]:
    """GET on the port-80 listener with Host = FQDN and with a forged Host."""
    if target.http_port is None:
        return []
    url = target.http_url(REDIRECT_PROBE_PATH)
    answers = []
    async with client(target) as http:
        for host in (target.fqdn, FORGED_HOST):
            answers.append((host, REDIRECT_PROBE_PATH, await get(http, url, {"Host": host})))
    return answers


@dataclass(frozen=True, slots=True)
class Echo:
    """The diagnostic headers endpoint's answer through the load balancer."""

    answer: Answer
    headers: dict[str, list[str]] | None = None  # what the server received; None: not read
    server: str = ""  # which server process answered
    client: str = ""  # doctor's own address on that connection


def _parse_echo(answer: Answer) -> tuple[dict[str, list[str]] | None, str]:
    if answer.status != 200:
        return None, ""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    echoed = {name: [str(v) for v in body.get(name) or []] for name in ECHOED_HEADERS}
    return echoed, str(body.get(SERVER_FIELD, ""))


async def echo_headers(http: httpx.AsyncClient, url: str,
                       headers: dict[str, str] | None = None) -> Echo:
    """GET the diagnostic headers endpoint at `url`."""
    try:
        response = await http.get(url, headers=headers)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return Echo(Answer(error=_error(exc)))
    answer = _answer(response)
    stream = response.extensions.get("network_stream")
    address = stream.get_extra_info("client_addr") if stream is not None else None
    echoed, server = _parse_echo(answer)
    own = str(address[0]) if isinstance(address, tuple) else ""
    return Echo(answer, echoed, server, own)


async def headers_through_lb(target: Target) -> Echo:
    """What the server received for an HTTPS request through the load balancer."""
    async with client(target) as http:
        return await echo_headers(http, target.https_url(HEADERS_PATH))


async def stream_timing(target: Target, *, http2: bool) -> StreamTiming:
    """When each line of the diagnostic stream arrived."""
    protocol = "HTTP/2" if http2 else "HTTP/1.1"
    arrivals: list[float] = []
    try:
        async with client(target, http2=http2) as http:
            start = time.monotonic()
            async with http.stream("GET", target.https_url(STREAM_PATH)) as response:
                if response.status_code != 200:
                    return StreamTiming(protocol, status=response.status_code)
                async for piece in response.aiter_raw():
                    now = time.monotonic() - start
                    arrivals += [now] * piece.count(b"\n")
                return StreamTiming(f"{protocol}" if response.http_version == protocol
                                    else response.http_version, tuple(arrivals), 200)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return StreamTiming(protocol, error=_error(exc))


async def cacerts_value(http: httpx.AsyncClient, url: str,
                        headers: dict[str, str] | None = None) -> tuple[str | None, str]:
    """(the `cacerts` setting's value, "") or (None, why it could not be read)."""
    answer = await get(http, url, headers)
    if answer.error:
        return None, answer.error
    if answer.status != 200:
        return None, answer.shown()
    try:
        value = json.loads(answer.body).get("value")
    except (ValueError, AttributeError):
        return None, "not the JSON of a setting"
    return (value, "") if isinstance(value, str) else (None, "no value in the answer")
