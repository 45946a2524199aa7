"""The per-node supervisor: runs a node's services as the kubelet runs a node's pods.

`corral up` writes `<node>/run/supervisor.json` (a `SupervisorSpec`) and starts
`corral supervise --node-dir <node>` in the background. The supervisor

* holds `<node>/run/supervisor.lock` (flock) while it runs, so there is never two, and a free
  lock tells anyone that none runs (a zombie holds no lock);
* kills what a previous supervisor of the node left running, then starts each service in its
  own process group with `CORRAL_NODE_DIR=<node>` in its environment (so every process of the
  node can be found, workers included), output appended to `<node>/logs/<service>.log`;
* restarts a service that exits, after a back-off that doubles from BACKOFF_INITIAL_S up to
  BACKOFF_MAX_S and resets once the service ran BACKOFF_RESET_S (Kubernetes' CrashLoopBackOff,
  shorter: restarting a process here costs no image pull);
* probes every service every PROBE_INTERVAL_S, writes `<node>/run/status.json`, and writes the
  node's record (`corral.server.domain.nodes`) to etcd every HEARTBEAT_INTERVAL_S and whenever
  a service's health changes;
* on SIGHUP reads the spec again: a service whose digest changed is restarted, a new one
  started, a dropped one stopped, a waiting one started at once; the others keep running;
* on SIGTERM/SIGINT stops the services (last first: SIGTERM, SIGKILL after STOP_TIMEOUT_S) and
  exits; it is a child subreaper and reaps whatever is orphaned below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from corral.install.heartbeat import Heartbeat
from corral.install.probes import check
from corral.install.providers.base import NodePaths
from corral.install.supervisor_spec import ServiceEntry, SupervisorSpec, read_spec
from corral.server.domain.nodes import HEARTBEAT_INTERVAL_S as NODE_HEARTBEAT_INTERVAL_S

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_S = 60.0
PROBE_INTERVAL_S = 2.0
HEARTBEAT_INTERVAL_S = NODE_HEARTBEAT_INTERVAL_S
MIN_BEAT_GAP_S = 1.0  # beats on health changes come no closer than this
STOP_TIMEOUT_S = 10.0
LOCK_RETRY_S = 1.0
SHUTDOWN_WAIT_S = 2.0  # for the probe and heartbeat tasks once the services are down
NODE_DIR_ENV = "CORRAL_NODE_DIR"
PR_SET_CHILD_SUBREAPER = 36


def next_backoff(previous_s: float, ran_s: float) -> float:
    """The wait before restarting a service that ran `ran_s` after a wait of `previous_s`."""
    if ran_s >= BACKOFF_RESET_S or previous_s <= 0:
        return BACKOFF_INITIAL_S
    return min(previous_s * 2, BACKOFF_MAX_S)


def lock_is_free(paths: NodePaths) -> bool:
    """True when no supervisor holds the node's lock (none runs)."""
    try:
        fd = os.open(paths.supervisor_lock, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock we may just have taken
    return True


def say(message: str) -> None:
    """One line of the supervisor's own log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} corral supervise: {message}", file=sys.stderr, flush=True)


class Runner:
    """One service: its process, restarts and last probe."""

    def __init__(self, entry: ServiceEntry, paths: NodePaths) -> None:
        self.entry = entry
        self.paths = paths
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.next_start: float | None = 0.0  # monotonic time to (re)start at; None: stay down
        self.backoff_s = 0.0
        self.restarts = 0
        self.healthy = False
        self.detail = "not started"
        self.stopping = False
        self.exited = asyncio.Event()

    def start(self) -> None:
        """Start the process now."""
        env = {**os.environ, **self.entry.env, NODE_DIR_ENV: str(self.paths.root)}
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with open(self.paths.log(self.entry.name), "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- {stamp} corral supervise: starting {self.entry.name}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.entry.argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.paths.root, process_group=0,
            )
        self.exited = asyncio.Event()
        self.started_at = time.monotonic()
        self.next_start = None
        self.detail = "starting"
        say(f"{self.entry.name} started (pid {self.proc.pid})")

    def reaped(self, status: int) -> None:
        """The process ended with wait status `status`: schedule the restart."""
        proc = self.proc
        if proc is None:
            return
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it left in its group (workers)
        self.proc = None
        self.healthy = False
        ran = time.monotonic() - self.started_at
        self.exited.set()
        if self.next_start is None and not self.stopping:
            self.backoff_s = next_backoff(self.backoff_s, ran)
            self.next_start = time.monotonic() + self.backoff_s
            self.restarts += 1
            self.detail = f"exited ({_describe_exit(code)}); restarting in {self.backoff_s:g}s"
            say(f"{self.entry.name} exited ({_describe_exit(code)}) after {ran:.1f}s; "
                f"restart {self.restarts} in {self.backoff_s:g}s")

    async def stop(self) -> None:
        """SIGTERM the service's group, SIGKILL after STOP_TIMEOUT_S; it stays down."""
        self.stopping = True
        self.next_start = None
        proc = self.proc
        if proc is None:
            return
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.exited.wait()
        except TimeoutError:
            say(f"{self.entry.name} did not stop within {STOP_TIMEOUT_S:g}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await self.exited.wait()
        self.detail = "stopped"
        say(f"{self.entry.name} stopped ({time.monotonic() - began:.1f}s)")

    def status(self) -> dict[str, Any]:
        """The status file's entry."""
        return {
            "pid": self.proc.pid if self.proc else None,
            "running": self.proc is not None,
            "healthy": self.healthy,
            "detail": self.detail,
            "restarts": self.restarts,
            "digest": self.entry.digest,
        }


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"


def _namespace(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def kill_leftovers(paths: NodePaths) -> int:
    """SIGKILL every process a previous supervisor of this node left behind (found by its
    CORRAL_NODE_DIR, in this mount namespace: another namespace's /var/lib/corral is another
    node's); returns how many."""
    import psutil

    root = str(paths.root)
    own = _namespace("self")
    killed = 0
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.environ().get(NODE_DIR_ENV) != root:
                continue
            if _namespace(proc.pid) != own:
                continue
            proc.kill()
            killed += 1
        except (psutil.Error, OSError):
            continue
    return killed


class Supervisor:
    """Runs the services of one node until SIGTERM."""

    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths
        self.spec = SupervisorSpec(())
        self.runners: dict[str, Runner] = {}
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.health_changed = asyncio.Event()
        self.reload_wanted = True  # the first round reads the spec
        self.heartbeat: Heartbeat | None = None

    def _on_hup(self) -> None:
        self.reload_wanted = True
        self.wake.set()

    def _on_stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _reap(self) -> None:
        by_pid = {r.proc.pid: r for r in self.runners.values() if r.proc is not None}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            runner = by_pid.pop(pid, None)
            if runner is not None:
                runner.reaped(status)
                self._write_status()
                self.health_changed.set()
                self.wake.set()

    async def _reload(self) -> None:
        self.reload_wanted = False
        try:
            spec = read_spec(self.paths)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            say(f"cannot read {self.paths.supervisor_spec}: {exc}; keeping the running services")
            return
        wanted = {entry.name: entry for entry in spec.services}
        for name in [n for n in reversed(list(self.runners)) if n not in wanted]:
            say(f"{name} is no longer wanted: stopping it")
            await self.runners.pop(name).stop()
        for entry in spec.services:
            runner = self.runners.get(entry.name)
            if runner is not None and runner.entry.digest != entry.digest:
                say(f"{entry.name} changed: restarting it")
                await runner.stop()
                runner = None
            if runner is None:
                self.runners[entry.name] = Runner(entry, self.paths)
            elif runner.proc is None:
                runner.next_start = 0.0  # waiting in back-off: start now
                runner.backoff_s = 0.0
        self.runners = {e.name: self.runners[e.name] for e in spec.services}
        self.spec = spec
        await self._set_heartbeat(spec)
        self._start_due()
        self._write_status()
        self.health_changed.set()

    async def _set_heartbeat(self, spec: SupervisorSpec) -> None:
        current = self.heartbeat.spec if self.heartbeat else None
        if current == spec.heartbeat:
            return
        if self.heartbeat is not None:
            await self.heartbeat.close()
        self.heartbeat = Heartbeat(spec.heartbeat, say) if spec.heartbeat else None

    def _start_due(self) -> float:
        """Start every service whose time has come; the seconds until the next one is due."""
        now = time.monotonic()
        soonest = 1.0
        for runner in self.runners.values():
            if runner.proc is not None or runner.next_start is None:
                continue
            if runner.next_start <= now:
                try:
                    runner.start()
                except OSError as exc:
                    runner.backoff_s = next_backoff(runner.backoff_s, 0.0)
                    runner.next_start = now + runner.backoff_s
                    runner.detail = f"cannot start: {exc}"
                    say(f"{runner.entry.name} cannot start ({exc}); "
                        f"retrying in {runner.backoff_s:g}s")
            if runner.next_start is not None:
                soonest = min(soonest, max(0.0, runner.next_start - now))
        return soonest

    async def _probe_loop(self) -> None:
        while True:
            runners = list(self.runners.values())
            results = await asyncio.gather(*(
                check(r.entry.health) if r.proc is not None else _down(r) for r in runners
            ))
            changed = False
            for runner, (ok, detail) in zip(runners, results, strict=True):
                if runner.proc is not None:
                    changed |= ok != runner.healthy
                    runner.healthy, runner.detail = ok, detail
            self._write_status()
            if changed:
                self.health_changed.set()
            await asyncio.sleep(PROBE_INTERVAL_S)

    async def _heartbeat_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_INTERVAL_S):
                    await self.health_changed.wait()
            self.health_changed.clear()
            if self.heartbeat is not None:
                services = {
                    name: (r.healthy, r.detail) for name, r in self.runners.items()
                }
                await self.heartbeat.beat(services)
            await asyncio.sleep(MIN_BEAT_GAP_S)

    def _write_status(self) -> None:
        data = {
            "pid": os.getpid(),
            "updatedAt": time.time(),
            "services": {name: r.status() for name, r in self.runners.items()},
        }
        with contextlib.suppress(OSError):
            tmp = self.paths.status.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2))
            os.replace(tmp, self.paths.status)

    async def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns the exit status."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop)
        loop.add_signal_handler(signal.SIGINT, self._on_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
        background = [
            asyncio.create_task(self._probe_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]
        try:
            while not self.stopping.is_set():
                if self.reload_wanted:
                    await self._reload()
                wait_s = self._start_due()
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self.wake.wait()
        finally:
            say("stopping the services")
            for name in reversed(list(self.runners)):
                await self.runners[name].stop()
            for task in background:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_WAIT_S):
                    await asyncio.gather(*background, return_exceptions=True)
            if self.heartbeat is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_WAIT_S):
                        await self.heartbeat.close()
            self._write_status()
            self._reap()
        say("stopped")
        return 0


def _dump_tasks() -> None:
    """kill -USR2 <pid>: the stack of every asyncio task to the log."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


async def _down(runner: Runner) -> tuple[bool, str]:
    return False, runner.detail


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _take_lock(fd: int) -> bool:
    """flock the node's lock; a moment's retries, since `lock_is_free` (a probe) holds it
    for an instant."""
    deadline = time.monotonic() + LOCK_RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def run_supervisor(root: Path, log_dir: Path | None = None) -> int:
    """The `corral supervise` process: take the node's lock, clear leftovers, supervise
    (service logs in `log_dir`, default `<root>/logs`)."""
    paths = NodePaths(root.resolve(), log_root=log_dir.resolve() if log_dir else None)
    paths.run.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(paths.supervisor_lock, os.O_RDWR | os.O_CREAT, 0o600)
    if not _take_lock(lock_fd):
        say(f"another supervisor runs for {paths.root}; exiting")
        os.close(lock_fd)
        return 1
    os.set_inheritable(lock_fd, False)
    killed = kill_leftovers(paths)
    if killed:
        say(f"killed {killed} process(es) a previous supervisor left running")
    paths.supervisor_pid.write_text(f"{os.getpid()}\n")
    _become_subreaper()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: every thread's stack to the log
    say(f"supervising {paths.root} (pid {os.getpid()})")
    try:
        return asyncio.run(Supervisor(paths).run())
    finally:
        with contextlib.suppress(OSError):
            paths.supervisor_pid.unlink()
        os.close(lock_fd)
