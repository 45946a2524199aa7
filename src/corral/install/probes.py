"""Live checks of a service (`HealthProbe`): what the supervisor reports in its heartbeat and
what `corral up` looks at before it plans. One small HTTP/1.1 GET or a TCP connect, with a
timeout; never raises."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from corral.install.services import HealthProbe

PROBE_TIMEOUT_S = 2.0
MAX_RESPONSE_BYTES = 64 * 1024
# A service that runs but answers unhealthy is asked again this long before it counts as down:
# etcd members answer unhealthy while they elect a new leader (another member just died).
UNHEALTHY_RECHECK_S = 6.0
RECHECK_INTERVAL_S = 0.5


def _context(probe: HealthProbe) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=probe.cafile or None)
    if probe.certfile:
        context.load_cert_chain(probe.certfile, probe.keyfile or None)
    return context


def _split(url: str) -> tuple[str, int]:
    host, _, port = url.rpartition(":")
    return host.strip("[]"), int(port)


async def check(probe: HealthProbe, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, detail): detail says what failed, or `ok`."""
    try:
        return await asyncio.wait_for(_check(probe), timeout_s)
    except TimeoutError:
        return False, f"no answer within {timeout_s:g}s"
    except (OSError, ssl.SSLError, ValueError) as exc:
        return False, _reason(exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


async def _check(probe: HealthProbe) -> tuple[bool, str]:
    if probe.kind == "tcp":
        host, port = _split(probe.url)
        _, writer = await asyncio.open_connection(host, port)
        writer.transport.abort()
        return True, "ok"
    parts = urlsplit(probe.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = _context(probe) if parts.scheme == "https" else None
    name = probe.server_name or host
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=name if context else None
    )
    try:
        netloc = probe.server_name or parts.netloc
        path = parts.path or "/"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nConnection: close\r\n"
            "User-Agent: corral-probe\r\n\r\n".encode()
        )
        await writer.drain()
        data = await reader.read(MAX_RESPONSE_BYTES)
        while len(data) < MAX_RESPONSE_BYTES and (chunk := await reader.read(4096)):
            data += chunk
    finally:
        writer.transport.abort()  # no TLS close_notify dance: a probe's answer is in
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or fields[1] != "200":
        return False, f"answered {status_line or 'nothing'}"
    text = body.decode("utf-8", "replace").replace(" ", "")
    if probe.expect and probe.expect.replace(" ", "") not in text:
        return False, f"answered 200 without {probe.expect}"
    return True, "ok"


async def settled_checks(
    probes: Sequence[HealthProbe], *, again: bool, settle_s: float = UNHEALTHY_RECHECK_S,
) -> list[tuple[bool, str]]:
    """`check` of every probe at once; with `again`, the ones that failed are asked again every
    RECHECK_INTERVAL_S until they pass or `settle_s` is over (a service that runs but answers
    unhealthy for a moment, as etcd members do while they elect a leader, is not reported
    unhealthy). Results in order."""
    results = await check_all(probes)
    deadline = time.monotonic() + settle_s
    while again and not all(ok for ok, _ in results) and time.monotonic() < deadline:
        await asyncio.sleep(RECHECK_INTERVAL_S)
        failed = [i for i, (ok, _) in enumerate(results) if not ok]
        for index, result in zip(failed, await check_all([probes[i] for i in failed]),
                                 strict=True):
            results[index] = result
    return results


async def check_all(probes: Sequence[HealthProbe]) -> list[tuple[bool, str]]:
    """`check` of every probe at once, results in order."""
    return list(await asyncio.gather(*(check(p) for p in probes)))
