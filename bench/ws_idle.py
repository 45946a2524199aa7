"""Memory per idle WebSocket through each proxy: N `wss://` WebSockets held open at once.

For each proxy in turn a fresh instance (the benchmark's configuration, with room for N
WebSockets: nginx counts both connections of each in `worker_connections`) and a fresh
WebSocket backend (`bench/ws_backend.py`) are started; the client opens N TLS connections
(HTTP/1.1), sends an `Upgrade: websocket` request on each, reads the `101`, sends one small
frame and reads it back through the tunnel, then holds them all idle. Reported: the proxy
worker's `(RSS with the WebSockets - RSS before) / N`. The backend is stopped first, so the
connections close from its side (no TIME_WAIT piles up on the proxies' ephemeral ports).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.configs import SERVER_NAME, CertFiles, ProxyPorts
from bench.idle import HANDSHAKE_CONCURRENCY, HANDSHAKE_TIMEOUT_S, settled_rss
from bench.processes import BenchError, Service
from bench.targets import PortPicker, start_corral_lb, start_haproxy, start_nginx_proxy

WS_PROXIES = ("nginx-rancher-example", "nginx-tuned", "haproxy", "corral-lb")
FD_HEADROOM = 1000  # descriptors each proxy needs beyond two per WebSocket (listeners, logs,
# connections still closing)
CONNECTION_HEADROOM = 100
BACKEND_SCRIPT = Path(__file__).resolve().with_name("ws_backend.py")
# A masked text frame "hi" (RFC 6455 §5.7 example style): FIN + text, mask bit, 2 bytes.
PING_FRAME = b"\x81\x82" + b"\x01\x02\x03\x04" + bytes([ord("h") ^ 1, ord("i") ^ 2])


@dataclass
class WsResult:
    """One proxy's idle-WebSocket figure."""

    name: str
    requested: int
    opened: int = 0
    rss_before: int = 0
    rss_with: int = 0

    @property
    def kib_per_websocket(self) -> float:
        """Marginal worker memory of one idle WebSocket, KiB."""
        if not self.opened:
            return float("nan")
        return (self.rss_with - self.rss_before) / 1024 / self.opened


def websocket_capacity(fd_limit: int) -> int:
    """How many WebSockets one proxy process can hold: two descriptors each."""
    return max(0, (fd_limit - FD_HEADROOM) // 2)


def fd_hard_limit() -> int:
    """This process's hard RLIMIT_NOFILE (what the proxies it starts can raise theirs to)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else int(hard)


def upgrade_request() -> bytes:
    """A WebSocket upgrade request for the benchmark's server name."""
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /ws HTTP/1.1\r\nHost: " + SERVER_NAME.encode() + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key
        + b"\r\n\r\n"
    )


async def _open_one(
    port: int, context: ssl.SSLContext, gate: asyncio.Semaphore
) -> asyncio.StreamWriter | None:
    async with gate:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
                writer.write(upgrade_request())
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 101 "):
                    raise BenchError(f"the upgrade through port {port} answered {head[:80]!r}")
                writer.write(PING_FRAME)
                await reader.readexactly(len(PING_FRAME))  # echoed through the tunnel
        except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            if writer is not None:
                writer.close()
            return None
        return writer


async def _hold(
    port: int, count: int, context: ssl.SSLContext, worker: psutil.Process, backend: Service
) -> tuple[int, int]:
    gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)
    writers = await asyncio.gather(*(_open_one(port, context, gate) for _ in range(count)))
    opened = [w for w in writers if w is not None]
    try:
        rss = await settled_rss(worker)
        return sum(1 for w in opened if not w.is_closing()), rss
    finally:
        backend.stop()  # the backend closes first: its FINs travel through the proxy
        for writer in opened:
            writer.close()
        for writer in opened:
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


def _start_proxy(
    name: str, work: Path, ports: ProxyPorts, backend_port: int, certs: CertFiles,
    cpu: int | None, count: int,
) -> Service:
    clients = count + CONNECTION_HEADROOM
    if name == "corral-lb":
        return start_corral_lb(
            work, ports, backend_port, certs, cpu, name="ws-corral-lb", worker_connections=clients
        )
    if name == "haproxy":
        return start_haproxy(
            work, ports, backend_port, certs, cpu, name="ws-haproxy", maxconn=clients
        )
    return start_nginx_proxy(
        work, ports, backend_port, certs, cpu, tuned=name == "nginx-tuned", prefix="ws-",
        worker_connections=2 * clients + FD_HEADROOM,
    )


def measure_websockets(
    work: Path,
    certs: CertFiles,
    context: ssl.SSLContext,
    count: int,
    *,
    proxy_cpu: int | None,
    backend_cpu: int | None,
    say: Callable[[str], None],
    names: Sequence[str] = WS_PROXIES,
) -> list[WsResult]:
    """`count` idle WebSockets through a fresh instance of each proxy, one proxy at a time."""
    results: list[WsResult] = []
    port = PortPicker()
    for name in names:
        result = WsResult(name, count)
        with contextlib.ExitStack() as stack:
            backend_port = port()
            directory = work / f"ws-backend-{name}"
            directory.mkdir(parents=True)
            backend = Service(
                f"WebSocket backend ({name})",
                [sys.executable, str(BACKEND_SCRIPT), "--port", str(backend_port)],
                directory / "output.log",
                backend_cpu,
                forks_worker=False,
            )
            stack.callback(backend.stop)
            backend.wait_listening([backend_port])
            ports = ProxyPorts(https=port(), http=port())
            proxy = _start_proxy(name, work, ports, backend_port, certs, proxy_cpu, count)
            stack.callback(proxy.stop)
            proxy.wait_listening([ports.https, ports.http])
            first = asyncio.run(_first(ports.https, context))
            if not first:
                raise BenchError(f"{name}: a WebSocket through it did not open; see {work}")
            worker = psutil.Process(proxy.worker_pid())
            result.rss_before = worker.memory_info().rss
            say(f"{name}: opening {count} idle WebSockets (wss://, one frame echoed on each)")
            result.opened, result.rss_with = asyncio.run(
                _hold(ports.https, count, context, worker, backend)
            )
            say(
                f"{name}: worker RSS {result.rss_before / 2**20:.1f} -> "
                f"{result.rss_with / 2**20:.1f} MiB with {result.opened} WebSockets"
            )
        results.append(result)
    return results


async def _first(port: int, context: ssl.SSLContext) -> bool:
    """One WebSocket opened and closed: the worker exists and the path works."""
    writer = await _open_one(port, context, asyncio.Semaphore(1))
    if writer is None:
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return True


def websocket_report(results: Sequence[WsResult], count: int, capped_by: int | None) -> list[str]:
    """The idle-WebSocket lines: KiB per WebSocket of each proxy, corral's ratio to each peer."""
    if not results:
        return []
    note = (
        f" (asked for {capped_by:,}; the open-files limit allows two descriptors per WebSocket "
        f"for {count:,})"
        if capped_by
        else ""
    )
    lines = ["", f"idle WebSockets: {count:,} wss:// WebSockets held at once per proxy{note}"]
    width = max(len(r.name) for r in results)
    for r in results:
        short = f" (only {r.opened:,} opened)" if r.opened < r.requested else ""
        lines.append(f"  {r.name:<{width}} {r.kib_per_websocket:>6.1f} KiB/WebSocket{short}")
    by_name = {r.name: r for r in results}
    corral = by_name.get("corral-lb")
    if corral is not None:
        for peer in ("nginx-tuned", "haproxy"):
            other = by_name.get(peer)
            if other is not None and other.kib_per_websocket:
                ratio = corral.kib_per_websocket / other.kib_per_websocket
                lines.append(f"memory per idle WebSocket corral/{peer}: {ratio:.2f}")
    return lines
