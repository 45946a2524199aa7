"""Worker processes, reload without dropping WebSockets, graceful stop and Prometheus metrics — on
a real `corral lb` with real clients."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.e2e.lb.clients import https_client
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import UPSTREAM, Certs, LbProcess, lb_config
from tests.support.net import free_port, wait_until
from tests.support.procs import corral_argv

OPEN_WEBSOCKETS = 100


def workers(lb: LbProcess) -> list[psutil.Process]:
    """The master's live worker processes."""
    master = psutil.Process(lb.process.pid)
    return [p for p in master.children() if p.status() != psutil.STATUS_ZOMBIE]


def rewrite(lb: LbProcess, config: dict[str, Any]) -> None:
    lb.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def reload_cli(lb: LbProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        corral_argv("lb", "reload", "--config", str(lb.config_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop_the_only_worker(lb: LbProcess, certs: Certs) -> psutil.Process:
    """SIGSTOP the lb's one worker once it has served a request, and return it. Served first:
    a worker stopped before it installed its signal handlers would be killed, not left
    hanging, by the master's SIGTERM or SIGQUIT (their default action is fatal, and the
    kernel ends a stopped process on a fatal signal)."""
    wait_until(lambda: len(workers(lb)) == 1, timeout=30, what="the worker")
    with https_client(certs, lb.port) as client:
        assert client.get("/echo").status_code == 200
    (worker,) = workers(lb)
    worker.suspend()
    wait_until(lambda: worker.status() == psutil.STATUS_STOPPED, timeout=10,
               what="the worker to be stopped")
    return worker


def reload_to_a_new_worker(lb: LbProcess, certs: Certs, previous: psutil.Process) -> None:
    """`corral lb reload`, then wait until a worker other than `previous` answers."""
    result = reload_cli(lb)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: any(p.pid != previous.pid for p in workers(lb)), timeout=30,
               what="the new generation's worker")
    with https_client(certs, lb.port) as client:
        assert client.get("/echo").status_code == 200


class RequestStream(threading.Thread):
    """Sends GET /echo back to back over keep-alive until stopped; counts answers and errors."""

    def __init__(self, certs: Certs, port: int) -> None:
        super().__init__(daemon=True)
        self.certs, self.port = certs, port
        self.ok = 0
        self.errors: list[str] = []
        self.served_by: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with https_client(self.certs, self.port) as client:
            while not self.stop.is_set():
                try:
                    response = client.get("/echo")
                    if response.status_code != 200:
                        self.errors.append(f"status {response.status_code}")
                    else:
                        self.ok += 1
                        self.served_by.add(response.json()["backend"])
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))


class WebSockets:
    """Many open wss:// connections on one event loop in a thread."""

    def __init__(self, certs: Certs, port: int, count: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.certs, self.port, self.count = certs, port, count
        self.sockets: list[Any] = self._run(self._open())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    async def _open(self) -> list[Any]:
        async def one() -> Any:
            return await connect(
                f"wss://localhost:{self.port}/ws",
                ssl=self.certs.client_context(),
                ping_interval=None,
                open_timeout=60,
            )

        return list(await asyncio.gather(*(one() for _ in range(self.count))))

    def echo_all(self, text: str) -> list[str]:
        async def talk() -> list[str]:
            async def one(i: int, ws: Any) -> str:
                await ws.send(f"{text} {i}")
                return str(await asyncio.wait_for(ws.recv(), timeout=30))

            return list(await asyncio.gather(*(one(i, ws) for i, ws in enumerate(self.sockets))))

        return list(self._run(talk()))

    def close(self) -> None:
        async def shut() -> None:
            await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)

        self._run(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def test_three_reloads_under_load_lose_nothing(
    certs: Certs, backends: StartBackends, start_lb: StartLb, tmp_path: Path
) -> None:
    """A request stream and 100 open WebSockets see zero errors across three reloads, and the
    WebSockets still echo afterwards; each reload's configuration takes effect."""
    pool = backends(names=["r0", "r1", "r2", "r3"])
    config = lb_config(certs, [pool[0]], worker_processes=2, pid_file=str(tmp_path / "lb.pid"))
    lb = start_lb(config)
    stream = RequestStream(certs, lb.port)
    stream.start()
    sockets = WebSockets(certs, lb.port, OPEN_WEBSOCKETS)
    try:
        assert sockets.echo_all("before") == [f"before {i}" for i in range(OPEN_WEBSOCKETS)]
        for round_ in (1, 2, 3):
            config["upstreams"][UPSTREAM]["servers"] = [pool[round_].address]
            rewrite(lb, config)
            result = reload_cli(lb)
            assert result.returncode == 0, result.stderr
            wait_until(
                lambda r=round_: f"r{r}" in stream.served_by,
                timeout=30,
                what=f"generation {round_ + 1} to serve",
            )
        ok_before = stream.ok
        wait_until(lambda: stream.ok > ok_before + 20, timeout=30, what="more answers")
        assert sockets.echo_all("after") == [f"after {i}" for i in range(OPEN_WEBSOCKETS)]
        # the first generation's workers still hold the WebSockets, and say so
        wait_until(lambda: "draining for 10s" in lb.output(), timeout=30,
                   what="a drain report in the lb's log")
        report = next(line for line in lb.output().splitlines() if "draining for 10s" in line)
        assert "tunnel(s) such as WebSockets" in report and " 0 tunnel(s)" not in report
    finally:
        stream.stop.set()
        stream.join(timeout=30)
        sockets.close()
    assert stream.errors == []
    assert stream.ok > 0
    assert lb.output().count("reloaded") == 3


def test_invalid_config_on_reload_changes_nothing(
    certs: Certs, backends: StartBackends, start_lb: StartLb, tmp_path: Path
) -> None:
    """`corral lb reload` refuses a broken file; a SIGHUP with it keeps the old workers serving."""
    backend = backends(1)[0]
    config = lb_config(certs, [backend], pid_file=str(tmp_path / "lb.pid"))
    lb = start_lb(config)
    wait_until(lambda: len(workers(lb)) == 1, timeout=30, what="the worker")  # the port is
    before = {p.pid for p in workers(lb)}  # bound by the master before the worker starts
    rewrite(lb, {**config, "upstreams": {UPSTREAM: {"servers": ["not-an-endpoint"]}}})
    result = reload_cli(lb)
    assert result.returncode == 1
    assert f"upstreams.{UPSTREAM}.servers" in result.stderr and "host:port" in result.stderr
    lb.process.signal(signal.SIGHUP)
    wait_until(lambda: "still serving the previous one" in lb.output(), timeout=30)
    assert {p.pid for p in workers(lb)} == before
    with https_client(certs, lb.port) as client:
        assert client.get("/echo").status_code == 200


def _tls_step(sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
              outgoing: ssl.MemoryBIO) -> bool:
    """One round of a client handshake over memory BIOs; True once it is complete."""
    try:
        tls.do_handshake()
        done = True
    except ssl.SSLWantReadError:
        done = False
    if pending := outgoing.read():
        sock.sendall(pending)
    if not done:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the lb closed the connection during the handshake")
        incoming.write(data)
    return done


def test_a_connection_in_its_tls_handshake_at_a_reload_is_served(
    certs: Certs, backends: StartBackends, start_lb: StartLb, tmp_path: Path
) -> None:
    """A client that got its ServerHello before a reload and finishes its handshake only once
    the new worker serves is still answered: the previous worker waits for it and exits after."""
    config = lb_config(certs, backends(1), pid_file=str(tmp_path / "lb.pid"))
    lb = start_lb(config)
    wait_until(lambda: len(workers(lb)) == 1, timeout=30, what="the worker")
    previous = workers(lb)[0]
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as sock:
        assert not _tls_step(sock, tls, incoming, outgoing)  # ClientHello out, ServerHello in
        reload_to_a_new_worker(lb, certs, previous)
        assert previous.is_running() and previous.status() != psutil.STATUS_ZOMBIE
        while not _tls_step(sock, tls, incoming, outgoing):
            pass
        tls.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        sock.sendall(outgoing.read())
        answer = b""
        while chunk := sock.recv(65536):
            incoming.write(chunk)
            try:
                while data := tls.read(65536):
                    answer += data
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLZeroReturnError:
                break
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    wait_until(lambda: previous.pid not in {p.pid for p in workers(lb)}, timeout=30,
               what="the previous worker to exit")


def test_a_silent_connection_does_not_keep_a_previous_worker(
    certs: Certs, backends: StartBackends, start_lb: StartLb, tmp_path: Path
) -> None:
    """A client that connected and sent nothing (no ClientHello) before a reload does not
    hold the previous worker for the 30 s TLS handshake timeout: it exits after about 10 s."""
    config = lb_config(certs, backends(1), pid_file=str(tmp_path / "lb.pid"))
    lb = start_lb(config)
    wait_until(lambda: len(workers(lb)) == 1, timeout=30, what="the worker")
    previous = workers(lb)[0]
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as silent:
        with https_client(certs, lb.port) as client:  # the worker has accepted `silent` too
            assert client.get("/echo").status_code == 200
        result = reload_cli(lb)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: previous.pid not in {p.pid for p in workers(lb)}, timeout=20,
                   what="the previous worker to exit with the silent connection open")
        silent.settimeout(5)
        assert silent.recv(1) == b""  # closed by the worker's exit, not still waiting


def test_a_previous_worker_that_outlives_its_drain_limit_is_killed(
    certs: Certs, backends: StartBackends, start_lb: StartLb, tmp_path: Path
) -> None:
    """A previous worker that cannot end its drain (here: stopped with SIGSTOP, so it never
    sees the reload's SIGQUIT) is killed once `drain_timeout` and the grace have passed; the
    new generation serves meanwhile."""
    lb = start_lb(lb_config(certs, backends(1), drain_timeout="1s",
                            pid_file=str(tmp_path / "lb.pid")))
    stuck = stop_the_only_worker(lb, certs)
    reload_to_a_new_worker(lb, certs, stuck)
    wait_until(lambda: stuck.pid not in {p.pid for p in workers(lb)}, timeout=30,
               what="the stuck previous worker to be killed")
    assert f"worker process {stuck.pid} (generation 1) still runs 5s past its limit: " \
           "killing it (SIGKILL)" in lb.output()
    assert "starting a new one" not in lb.output()  # a previous generation is not replaced


def test_a_stop_ends_even_with_a_worker_that_cannot_finish(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """SIGTERM with a worker stopped (SIGSTOP): the master kills it `shutdown_timeout` plus
    the grace later and exits, instead of waiting for it for good."""
    lb = start_lb(lb_config(certs, backends(1), shutdown_timeout="1s"))
    stuck = stop_the_only_worker(lb, certs)
    lb.process.signal(signal.SIGTERM)
    assert lb.process.proc.wait(timeout=30) == 0
    assert f"worker process {stuck.pid} (generation 1) still runs 5s past its limit" \
        in lb.output()


def test_killed_worker_is_replaced(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """kill -9 of a worker: the master starts another, and the lb keeps answering."""
    lb = start_lb(lb_config(certs, backends(1), worker_processes=2))
    wait_until(lambda: len(workers(lb)) == 2, timeout=30)
    victim = workers(lb)[0]
    victim.kill()
    wait_until(
        lambda: len(workers(lb)) == 2 and victim.pid not in {p.pid for p in workers(lb)}
        and f"worker process {victim.pid} exited (killed by signal 9); starting a new one"
        in lb.output(),
        timeout=30,
        what="a replacement worker, and the master saying so",
    )
    with https_client(certs, lb.port) as client:
        assert all(client.get("/echo").status_code == 200 for _ in range(10))


def test_sigterm_finishes_requests_in_flight(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """SIGTERM: a request in flight still gets its answer; then the lb exits cleanly."""
    lb = start_lb(lb_config(certs, backends(1)))
    answer: dict[str, Any] = {}

    def slow_request() -> None:
        with https_client(certs, lb.port) as client:
            answer["status"] = client.get("/delay/1.5").status_code

    thread = threading.Thread(target=slow_request)
    thread.start()
    # the request must be in flight before the signal: wait for the backend to have it
    wait_until(lambda: _connections_to_backend(lb) > 0, timeout=10, what="request in flight")
    lb.process.signal(signal.SIGTERM)
    thread.join(timeout=30)
    assert answer.get("status") == 200
    assert lb.process.proc.wait(timeout=30) == 0


def _connections_to_backend(lb: LbProcess) -> int:
    upstream_ports = {int(s.rsplit(":", 1)[1]) for s in lb.config["upstreams"][UPSTREAM]["servers"]}
    count = 0
    for worker in workers(lb):
        for conn in worker.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port in upstream_ports:
                count += 1
    return count


def test_metrics_count_requests_tunnels_and_health(
    certs: Certs, backends: StartBackends, start_lb: StartLb
) -> None:
    """GET /metrics on the admin port: requests by class, latency histogram, bytes, open
    tunnels and endpoint health, summed over workers by the standard client library."""
    port = free_port()
    lb = start_lb(lb_config(certs, backends(1), worker_processes=2, metrics={"listen": port}))
    with https_client(certs, lb.port) as client:
        for _ in range(20):
            assert client.get("/echo").status_code == 200
        assert client.get("/status/404").status_code == 404

    def sample(name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return -1.0

    wait_until(lambda: sample("corral_lb_requests_total", code="2xx") >= 20, timeout=15)
    assert sample("corral_lb_requests_total", code="4xx") == 1
    assert sample("corral_lb_request_duration_seconds_count", upstream=UPSTREAM) >= 21
    assert sample("corral_lb_sent_bytes_total", upstream=UPSTREAM) > 0
    assert sample("corral_lb_endpoint_up", upstream=UPSTREAM) == 1

    async def with_tunnel() -> None:
        async with connect(
            f"wss://localhost:{lb.port}/ws", ssl=certs.client_context(), ping_interval=None
        ) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await asyncio.to_thread(wait_until, lambda: sample("corral_lb_tunnels") == 1, 15)

    asyncio.run(with_tunnel())
