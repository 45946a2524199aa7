"""The master process: owns the listening sockets, runs worker generations, reloads.

No event loop runs here: signals are blocked and taken one at a time with `sigtimedwait`, so
nothing races. Workers inherit the listening sockets; on a reload (SIGHUP) the new configuration
is checked first, a new generation of workers starts on the same sockets (nothing queued in the
kernel is lost), and the old generation drains: it stops accepting and keeps serving what it
has open, WebSockets included, until that closes or `drain_timeout` passes. A worker still
alive `KILL_GRACE_S` past its limit (`drain_timeout`, or `shutdown_timeout` on a stop) is
killed, so no reload leaves a worker behind for good.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral import _native
from corral.config.errors import ConfigError
from corral.config.lb import LbConfig
from corral.proxy.listener import ListenerSpec, bind, group_listeners

HANDLED = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD}
RESPAWN_DELAY_S = 1.0  # a worker that died within this of its start is restarted after it
WAIT_STEP_S = 0.2
KILL_GRACE_S = 5.0  # a worker still alive this long past its drain or stop limit gets SIGKILL


@dataclass
class _Child:
    role: str  # "worker" or "metrics"
    generation: int
    slot: int
    started: float
    kill_at: float | None = None  # told to drain or stop: SIGKILL if still alive then


@dataclass
class Master:
    """Supervises worker processes for one `corral lb` run."""

    config: LbConfig
    config_path: Path | None
    generation: int = 0
    sockets: dict[tuple[str, int], socket.socket] = field(default_factory=dict)
    children: dict[int, _Child] = field(default_factory=dict)
    pending: list[tuple[float, _Child]] = field(default_factory=list)
    stopping: bool = False
    metrics_dir: str | None = None
    # how a reload reads `config_path` (None: as an lb file; `corral ingress` passes its own)
    load: Callable[[Path], LbConfig] | None = None

    def run(self) -> int:
        """Start, then supervise until SIGTERM/SIGINT; returns the exit status."""
        if self.config.metrics is not None:
            self.metrics_dir = tempfile.mkdtemp(prefix="corral-lb-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        try:
            self._bind(group_listeners(self.config))
        except OSError as exc:
            say(f"cannot listen: {exc}")
            return 1
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        self._write_pid_file()
        try:
            self._start_generation()
            if self.config.metrics is not None:
                self._spawn(_Child("metrics", 0, 0, time.monotonic()))
            self._announce()
            self._supervise()
        finally:
            self._remove_pid_file()
            for sock in self.sockets.values():
                sock.close()
        return 0

    # -- supervision ---------------------------------------------------------------------------
    def _supervise(self) -> None:
        while self.children or (self.pending and not self.stopping):
            info = signal.sigtimedwait(HANDLED, WAIT_STEP_S)
            self._reap()
            self._respawn_due()
            self._kill_overdue()
            if info is None:
                continue
            if info.si_signo == signal.SIGHUP and not self.stopping:
                self.reload()
            elif info.si_signo in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                if not self.stopping:
                    say("stopping: workers finish what is in flight")
                self.stopping = True
                self.pending.clear()
                self._signal_all(signal.SIGTERM, limit_s=self.config.shutdown_timeout)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if child.role == "worker" and self.metrics_dir:
                from corral.proxy.metrics import worker_gone

                worker_gone(pid)
            current = child.role == "metrics" or child.generation == self.generation
            if self.stopping or not current:
                continue
            say(f"{child.role} process {pid} exited ({_describe(status)}); starting a new one")
            delay = RESPAWN_DELAY_S if time.monotonic() - child.started < RESPAWN_DELAY_S else 0
            self.pending.append((time.monotonic() + delay, child))

    def _respawn_due(self) -> None:
        now = time.monotonic()
        due = [child for at, child in self.pending if at <= now]
        self.pending = [(at, child) for at, child in self.pending if at > now]
        for child in due:
            if child.role == "metrics" or child.generation == self.generation:
                self._spawn(_Child(child.role, child.generation, child.slot, now))

    def _signal_all(
        self, signum: int, generation: int | None = None, *, limit_s: float | None = None
    ) -> None:
        """Signal every child (or one generation's workers); with `limit_s`, each signalled
        child that is still alive `KILL_GRACE_S` after that limit is killed."""
        kill_at = None if limit_s is None else time.monotonic() + limit_s + KILL_GRACE_S
        for pid, child in list(self.children.items()):
            if generation is None or (child.role == "worker" and child.generation == generation):
                if kill_at is not None:
                    child.kill_at = min(kill_at, child.kill_at or kill_at)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for pid, child in list(self.children.items()):
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_at = None  # killed once; _reap forgets it when it is gone
                say(f"{child.role} process {pid} (generation {child.generation}) still runs "
                    f"{KILL_GRACE_S:g}s past its limit: killing it (SIGKILL)")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    # -- reload --------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Check the configuration file again; on success, replace the workers gracefully."""
        if self.config_path is None:
            say("reload: no configuration file to read")
            return False
        from corral.config.lb_load import load_lb_config

        try:
            config = (self.load or load_lb_config)(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                say(f"reload: {problem}")
            say("reload: the configuration has problems; still serving the previous one")
            return False
        if (config.metrics is None) != (self.config.metrics is None):
            say("reload: turning metrics on or off needs a restart; still serving the previous one")
            return False
        specs = group_listeners(config)
        try:
            added = self._bind(specs)
        except OSError as exc:
            say(f"reload: cannot listen: {exc}; still serving the previous configuration")
            return False
        old, drain_s = self.generation, self.config.drain_timeout  # the old workers' limit
        self.config = config
        self._start_generation()
        self._signal_all(signal.SIGQUIT, old, limit_s=drain_s)  # drain the previous generation
        wanted = {(s.address, s.port) for s in specs}
        for key in [k for k in self.sockets if k not in wanted]:
            self.sockets.pop(key).close()
        say(
            f"reloaded {self.config_path} (generation {self.generation}; "
            f"{len(added)} new listener(s)); previous workers are draining"
        )
        return True

    # -- processes -----------------------------------------------------------------------------
    def _bind(self, specs: list[ListenerSpec]) -> list[tuple[str, int]]:
        added: list[tuple[str, int]] = []
        try:
            for spec in specs:
                key = (spec.address, spec.port)
                if key not in self.sockets:
                    self.sockets[key] = bind(spec, reuse_port=False)
                    added.append(key)
        except OSError:
            for key in added:
                self.sockets.pop(key).close()
            raise
        return added

    def _start_generation(self) -> None:
        self.generation += 1
        now = time.monotonic()
        for slot in range(self.config.worker_count):
            self._spawn(_Child("worker", self.generation, slot, now))

    def _spawn(self, child: _Child) -> None:
        config = self.config
        listeners = [
            (spec, self.sockets[(spec.address, spec.port)]) for spec in group_listeners(config)
        ]
        pid = os.fork()
        if pid:
            self.children[pid] = child
            return
        code = 1
        try:  # the child: never returns into the master's code
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            for signum in HANDLED:
                signal.signal(signum, signal.SIG_DFL)
            if child.role == "metrics":
                code = _run_metrics(config)
            else:
                from corral.proxy.worker import run_worker

                code = run_worker(config, listeners, metrics=config.metrics is not None)
        except BaseException as exc:
            say(f"{child.role} {child.slot} failed: {exc!r}")
        finally:
            os._exit(code)

    def _announce(self) -> None:
        for spec in group_listeners(self.config):
            say(f"listening on {spec.describe()}")
        if self.config.metrics is not None:
            address, port = self.config.metrics.address
            say(f"metrics on http://{address}:{port}/metrics")
        count = self.config.worker_count
        say(f"{count} worker process{'es' if count > 1 else ''}, master pid {os.getpid()}")
        say(_native.describe())

    def _write_pid_file(self) -> None:
        if self.config.pid_file:
            Path(self.config.pid_file).write_text(f"{os.getpid()}\n")

    def _remove_pid_file(self) -> None:
        if self.config.pid_file:
            with contextlib.suppress(FileNotFoundError):
                Path(self.config.pid_file).unlink()


def _run_metrics(config: LbConfig) -> int:
    from corral.proxy.metrics import serve

    assert config.metrics is not None
    address, port = config.metrics.address
    serve(address, port)
    while True:
        signal.pause()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def say(message: str) -> None:
    """A line on stderr, prefixed like every other lb message."""
    print(f"corral lb: {message}", file=sys.stderr, flush=True)


def run(
    config: LbConfig,
    config_path: Path | None = None,
    load: Callable[[Path], LbConfig] | None = None,
) -> int:
    """Run the load balancer until SIGTERM/SIGINT; returns the exit status. A reload (SIGHUP)
    reads `config_path` again with `load` (default: as a `corral lb` file)."""
    if config.worker_rlimit_nofile:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = config.worker_rlimit_nofile
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
        except (ValueError, OSError) as exc:
            say(f"cannot raise the open-files limit to {limit} (now {soft}/{hard}): {exc}")
    return Master(config, config_path, load=load).run()
