"""What the HTTP answers mean: HTTP/2 and HTTP/1.1, the port-80 redirect, redirect loops, the
forwarded headers the server received, streaming without buffering. Pure."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from corral.doctor.catalogue import BY_ID, failed, passed, skipped
from corral.doctor.model import CheckResult, Fix, Target
from corral.server.https import parse_host

REDIRECT_STATUSES = frozenset({301, 308})
# a stream counts as unbuffered when its chunks arrived spread over at least this share of the
# time the server took to send them
UNBUFFERED_SPREAD = 0.5


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer as doctor saw it (status 0 and `error` when there was none)."""

    status: int = 0
    location: str = ""
    http_version: str = ""
    body: str = ""
    error: str = ""

    def shown(self) -> str:
        """`301 → https://…`, `200`, or the error."""
        if self.error:
            return self.error
        return f"{self.status} → {self.location}" if self.location else str(self.status)


def protocol_result(check_id: str, wanted: str, answer: Answer, alpn: str | None) -> CheckResult:
    """GET /ping over `wanted` ("HTTP/2" or "HTTP/1.1") answered 200."""
    if answer.error:
        return failed(check_id, f"GET /ping over {wanted}: {answer.error}")
    if check_id == "http2" and alpn != "h2":
        return failed(check_id, f"ALPN offered h2 and http/1.1; the load balancer chose "
                                f"{alpn or 'none'}")
    if answer.http_version != wanted:
        return failed(check_id, f"asked for {wanted}, got {answer.http_version}")
    if answer.status != 200:
        return failed(check_id, f"GET /ping over {wanted} answered {answer.status}")
    via = " (ALPN h2)" if check_id == "http2" else ""
    return passed(check_id, f"GET /ping over {wanted}{via}: 200 {answer.body.strip()[:20]}")


def _redirect_problem(answer: Answer, target: Target, path: str) -> str | None:
    if answer.error:
        return answer.error
    if answer.status not in REDIRECT_STATUSES:
        kind = "a temporary redirect" if 300 <= answer.status < 400 else "no redirect"
        return f"{answer.shown()} ({kind}; 301 or 308 expected)"
    parts = urlsplit(answer.location)
    if parts.scheme != "https":
        return f"{answer.shown()}: not to https"
    if (parts.hostname or "").lower().rstrip(".") != target.fqdn:
        return f"{answer.shown()}: not to {target.fqdn} (an open redirect)"
    sent = urlsplit(path)
    if parts.path != sent.path or parts.query != sent.query:
        return f"{answer.shown()}: the path {path} was not kept"
    return None


def redirect_result(answers: Sequence[tuple[str, str, Answer]], target: Target) -> CheckResult:
    """Port 80 answers 301/308 to https://FQDN with the same path, whatever Host was sent.
    `answers` is (Host sent, path sent, answer) per request."""
    if target.http_port is None:
        return skipped("http-redirect", "not checked (--http-port 0)")
    for host, path, answer in answers:
        problem = _redirect_problem(answer, target, path)
        if problem is not None:
            return failed("http-redirect", f"Host {host}: {problem}")
    host, path, answer = answers[0]
    port = urlsplit(answer.location).port or 443
    note = f" (port {port}, while doctor was given {target.port})" if port != target.port else ""
    hosts = " and ".join(host for host, _, _ in answers)
    return passed("http-redirect", f"{answer.status} → {answer.location}{note}, for Host "
                                   f"{hosts}")


def loop_result(answer: Answer) -> CheckResult:
    """The server answers an HTTPS request through the load balancer without redirecting it."""
    if answer.error:
        return skipped("redirect-loop", f"not answered: {answer.error}")
    if 300 <= answer.status < 400 and answer.location.startswith("https://"):
        return failed("redirect-loop", f"an HTTPS request was answered {answer.shown()}: the "
                                       "server saw plain HTTP (no X-Forwarded-Proto: https), "
                                       "so the browser is sent round again and again")
    if answer.status == 400 and "https" in answer.body.lower():
        return failed("redirect-loop", f"an HTTPS request was answered 400 "
                                       f"{answer.body.strip()!r}: the server saw plain HTTP")
    if answer.status >= 500:
        return skipped("redirect-loop", f"the load balancer answered {answer.status}")
    return passed("redirect-loop", f"an HTTPS request was answered {answer.status}, not "
                                   "redirected")


_DIRECTIVES = {
    "host": "proxy_set_header Host $host;",
    "x-forwarded-proto": "proxy_set_header X-Forwarded-Proto $scheme;",
    "x-forwarded-port": "proxy_set_header X-Forwarded-Port $server_port;",
    "x-forwarded-for": "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
}


def _host_problem(values: list[str], target: Target) -> str | None:
    if len(values) != 1:
        return f"Host {values or 'missing'}"
    host = parse_host(values[0])
    if host is None or host.name != target.fqdn or host.port not in (None, target.port):
        return f"Host {values[0]!r}, not {target.fqdn}"
    return None


def _address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return False
    return True


def forwarded_result(
    echoed: dict[str, list[str]] | None, answer: Answer, target: Target, client: str
) -> CheckResult:
    """The server received Host = FQDN, X-Forwarded-Proto https, X-Forwarded-Port = the port
    doctor connected to, X-Forwarded-For ending in an address (doctor's, unless NAT is between).
    `echoed` is the diagnostic endpoint's answer (None when not reached)."""
    if echoed is None:
        if 300 <= answer.status < 400 or answer.status == 400:
            return skipped("forwarded", "not reached: see no redirect loop")
        if answer.status == 404:
            return skipped("forwarded", "the server has no /diagnostics/headers (not corral "
                                        "server?)")
        return skipped("forwarded", f"not reached: {answer.shown()}")
    problems: dict[str, str] = {}
    host = _host_problem(echoed.get("host", []), target)
    if host:
        problems["host"] = host
    proto = echoed.get("x-forwarded-proto", [])
    if proto != ["https"]:
        problems["x-forwarded-proto"] = f"X-Forwarded-Proto {proto or 'missing'}, not https"
    port = echoed.get("x-forwarded-port", [])
    if port != [str(target.port)]:
        problems["x-forwarded-port"] = f"X-Forwarded-Port {port or 'missing'}, not {target.port}"
    chain = ", ".join(echoed.get("x-forwarded-for", []))
    last = chain.rsplit(",", 1)[-1].strip() if chain else ""
    if not _address(last):
        problems["x-forwarded-for"] = f"X-Forwarded-For {chain or 'missing'}"
    if problems:
        fix = Fix(nginx=" ".join(_DIRECTIVES[name] for name in problems),
                  corral_lb=BY_ID["forwarded"].fix.corral_lb)
        return failed("forwarded", "; ".join(problems.values()), fix)
    nat = "" if last == client or not client else f" (doctor is {client}: NAT between?)"
    return passed("forwarded", f"Host {echoed['host'][0]}, X-Forwarded-Proto https, "
                               f"X-Forwarded-Port {target.port}, X-Forwarded-For {chain}{nat}")


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """When each chunk of the diagnostic stream arrived (seconds after the request)."""

    protocol: str
    arrivals: tuple[float, ...] = ()
    status: int = 0
    error: str = ""


def stream_result(timings: Sequence[StreamTiming], chunks: int, interval_s: float) -> CheckResult:
    """A streamed response arrives chunk by chunk: its chunks spread over time as sent."""
    sent_over = (chunks - 1) * interval_s
    shown, buffered = [], []
    for timing in timings:
        if timing.error or timing.status != 200:
            if timing.status == 404:
                return skipped("streaming", "the server has no /diagnostics/stream (not corral "
                                            "server?)")
            return skipped("streaming", f"{timing.protocol}: "
                                        f"{timing.error or f'answered {timing.status}'}")
        times = "/".join(f"{t:.1f}" for t in timing.arrivals)
        shown.append(f"{timing.protocol} at {times} s")
        spread = timing.arrivals[-1] - timing.arrivals[0] if timing.arrivals else 0.0
        if len(timing.arrivals) < 2 or spread < UNBUFFERED_SPREAD * sent_over:
            buffered.append(timing.protocol)
    saw = f"{chunks} chunks sent {interval_s:g} s apart arrived " + ", ".join(shown)
    if buffered:
        return failed("streaming", f"{saw}: held back and sent together ({', '.join(buffered)})")
    return passed("streaming", saw)


def token_api_result(answer: Answer) -> CheckResult:
    """`token-api`: an authenticated GET through the load balancer answers 200 for the token's
    user (`GET /v3/users?me=true`)."""
    if answer.error:
        return failed("token-api", f"GET /v3/users?me=true: {answer.error}")
    if answer.status == 200:
        try:
            data = json.loads(answer.body).get("data") or [{}]
            user = str(data[0].get("username", "")) or "?"
        except (ValueError, AttributeError, IndexError):
            user = "?"
        return passed("token-api", f"GET /v3/users?me=true: 200 as {user}")
    if answer.status == 401:
        return failed("token-api", "GET /v3/users?me=true: 401: the token was refused (wrong "
                                   "or expired, or Authorization did not reach the server)")
    return failed("token-api", f"GET /v3/users?me=true answered {answer.status}")
