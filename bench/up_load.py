"""A steady stream of reads and writes through the cluster's load balancer, counted (used by
bench/up and the node-loss end-to-end test).

Readers loop `GET /v3/settings/cacerts` (idempotent: a failure is a failure of the cluster);
one writer creates an API token every `write_interval_s` (`POST /v3/tokens`, not idempotent:
the load balancer may not retry it) and remembers each one acknowledged with 201, so a test
can check they all survived. Each thread keeps one HTTPS connection, reconnecting after an
error. Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

READ_PATH = "/v3/settings/cacerts"
REQUEST_TIMEOUT_S = 10.0


@dataclass
class LoadStats:
    """What the load saw (guarded by the Load's lock while it runs)."""

    reads_ok: int = 0
    reads_failed: int = 0
    writes_ok: int = 0
    writes_failed: int = 0
    read_errors: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)  # ids of tokens created with 201
    ack_times: list[float] = field(default_factory=list)  # monotonic time of each ack

    def longest_write_pause_s(self, since: float = 0.0) -> float:
        """The longest gap between acknowledged writes from the last one before `since`
        (monotonic) on."""
        before = [t for t in self.ack_times if t < since][-1:]
        times = before + [t for t in self.ack_times if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class Load:
    """Reader threads and one writer against `https://<fqdn>:<port>` (fqdn → 127.0.0.1)."""

    def __init__(
        self,
        fqdn: str,
        port: int,
        context: ssl.SSLContext,
        token: str,
        *,
        readers: int = 2,
        write_interval_s: float = 0.1,
    ) -> None:
        self.fqdn, self.port, self.context, self.token = fqdn, port, context, token
        self.readers = readers
        self.write_interval_s = write_interval_s
        self.stats = LoadStats()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.fqdn, self.port, context=self.context,
                                           timeout=REQUEST_TIMEOUT_S)

    def _request(
        self, conn: http.client.HTTPSConnection, method: str, path: str, body: bytes | None
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def _read_loop(self) -> None:
        conn = self._connect()
        while not self.stopping.is_set():
            try:
                status, _ = self._request(conn, "GET", READ_PATH, None)
                error = "" if status == 200 else f"GET answered {status}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"GET failed: {type(exc).__name__}: {exc}"
            with self.lock:
                if error:
                    self.stats.reads_failed += 1
                    self.stats.read_errors.append(error)
                else:
                    self.stats.reads_ok += 1
            if error:
                conn.close()
                conn = self._connect()
        conn.close()

    def _write_loop(self) -> None:
        conn = self._connect()
        count = 0
        while not self.stopping.wait(self.write_interval_s):
            count += 1
            body = json.dumps({"description": f"load-{count}"}).encode()
            ident = ""
            try:
                status, raw = self._request(conn, "POST", "/v3/tokens", body)
                if status == 201:
                    ident = str(json.loads(raw)["id"])
                    error = ""
                else:
                    error = f"POST answered {status}"
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                error = f"POST failed: {type(exc).__name__}: {exc}"
            with self.lock:
                if error:
                    self.stats.writes_failed += 1
                    self.stats.write_errors.append(error)
                else:
                    self.stats.writes_ok += 1
                    self.stats.acked.append(ident)
                    self.stats.ack_times.append(time.monotonic())
            if error:
                conn.close()
                conn = self._connect()
        conn.close()

    def start(self) -> None:
        """Start the readers and the writer."""
        targets = [self._read_loop] * self.readers + [self._write_loop]
        for target in targets:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> LoadStats:
        """Stop every thread (each finishes its request in flight) and return the counts."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT_S * 2)
        return self.stats

    def snapshot(self) -> LoadStats:
        """A copy of the counts so far."""
        with self.lock:
            return LoadStats(
                self.stats.reads_ok, self.stats.reads_failed, self.stats.writes_ok,
                self.stats.writes_failed, list(self.stats.read_errors),
                list(self.stats.write_errors), list(self.stats.acked),
                list(self.stats.ack_times),
            )


def missing_writes(fqdn: str, port: int, context: ssl.SSLContext, token: str,
                   acked: list[str]) -> list[str]:
    """The acknowledged token ids the cluster no longer has."""
    conn = http.client.HTTPSConnection(fqdn, port, context=context, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", "/v3/tokens?limit=10000",
                     headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /v3/tokens answered {response.status}: {raw[:200]!r}")
        data = json.loads(raw)
    finally:
        with contextlib.suppress(OSError):
            conn.close()
    present = {str(item.get("id")) for item in data.get("data") or ()}
    return [ident for ident in acked if ident not in present]


class EjectionWatch:
    """Follows corral lb's log for one endpoint: every failed connect to it (a worker ejects
    it on the spot) and the health check's `is down` (a worker that sent it nothing ejects it
    after `fall` failed checks). Once the last worker has ejected it, no such line comes again:
    `last_s` is when the last one came, seconds after `start`."""

    def __init__(self, log: Path, endpoint: str) -> None:
        self.log = log
        self.endpoint = endpoint
        self.offset = log.stat().st_size if log.exists() else 0
        self.started = time.monotonic()
        self.seen: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> None:
        """Start following (from the log's current end), the clock at zero."""
        self.started = time.monotonic()
        self.thread.start()

    def _follow(self) -> None:
        pending = b""
        while not self.stopping.wait(0.05):
            try:
                with self.log.open("rb") as handle:
                    handle.seek(self.offset)
                    chunk = handle.read()
            except OSError:
                continue
            self.offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            now = time.monotonic() - self.started
            for raw in lines:
                line = raw.decode(errors="replace")
                if self.endpoint in line and ("failed" in line or "is down" in line):
                    self.seen.append((now, line))

    @property
    def first_s(self) -> float | None:
        """When the first worker ejected the endpoint (None: not yet)."""
        return self.seen[0][0] if self.seen else None

    @property
    def last_s(self) -> float | None:
        """When the last ejection line came (None: none yet)."""
        return self.seen[-1][0] if self.seen else None

    def stop(self) -> None:
        """Stop following."""
        self.stopping.set()
        self.thread.join(timeout=5)
