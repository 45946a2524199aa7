"""Processes the benchmark starts: own session, optionally pinned to a CPU, always stopped.

Each child runs in its own session (Ctrl-C reaches only the benchmark, which then stops the
children in order) and gets SIGTERM from the kernel if the benchmark itself dies (PDEATHSIG).
Children are started with `spawn` (or `spawn_captured`, `run_child`, which use it): Ctrl-C,
SIGTERM and SIGHUP are held while the child is forked, because Python runs a handler that fires
during a fork with a `preexec_fn` inside the at-fork hooks (logging's), which print its
KeyboardInterrupt and drop it; the benchmark would then carry on as if never interrupted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 10.0
HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})  # while forking


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


def child_setup(cpu: int | None) -> Callable[[], None]:
    """A preexec function: die with the parent, and run on `cpu` when one is given."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)  # held by spawn in the parent
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


def spawn(argv: Sequence[str], cpu: int | None, **options: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv, **options)` with `child_setup(cpu)`, the signals of
    HELD_SIGNALS held while it forks. One that came meanwhile is handled once the child
    exists: the child is killed and the handler's exception (KeyboardInterrupt, SystemExit)
    raised here."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    proc: subprocess.Popen[Any] | None = None
    try:
        proc = subprocess.Popen(argv, preexec_fn=child_setup(cpu), **options)
    finally:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # runs a pending handler
        except BaseException:
            if proc is not None:
                kill(proc, group=bool(options.get("start_new_session")))
            raise
    return proc


def spawn_captured(
    argv: Sequence[str], cpu: int | None, *, merge_stderr: bool = False
) -> subprocess.Popen[str]:
    """`spawn` with stdin empty and stdout and stderr piped as text (with `merge_stderr`,
    stderr goes to the stdout pipe)."""
    return spawn(
        argv,
        cpu,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def kill(proc: subprocess.Popen[Any], *, group: bool = False) -> None:
    """SIGKILL the child (its process group, with `group`) unless it is gone; reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    proc.wait()


def run_child(
    argv: Sequence[str], cpu: int | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True, timeout=timeout)` started with
    `spawn` (pinned to `cpu` when given); the child is killed if anything interrupts the
    wait (TimeoutExpired, Ctrl-C)."""
    proc = spawn_captured(argv, cpu)
    with proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            kill(proc)
            raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Service:
    """A long-running child (nginx or corral lb) in the foreground, output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cpu: int | None,
        *,
        forks_worker: bool | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.forks_worker = forks_worker  # None: find out (a single child, else itself)
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = spawn(
                self.argv,
                cpu,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        except BaseException:
            self._log.close()
            raise

    def output_tail(self, lines: int = 20) -> str:
        """The last lines the process printed (for error messages)."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_listening(self, ports: Sequence[int], timeout: float = 30.0) -> None:
        """Wait until every port accepts connections; fail early if the process died."""
        deadline = time.monotonic() + timeout
        for port in ports:
            while not port_open(port):
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with status {self.proc.returncode} before "
                        f"listening on 127.0.0.1:{port}; its output ({self.log_path}):\n"
                        f"{self.output_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{self.name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s; "
                        f"its output ({self.log_path}):\n{self.output_tail()}"
                    )
                time.sleep(0.05)

    def worker_pid(self) -> int:
        """The pid serving connections: the single worker child, or the process itself.

        Call it once the service has answered a request, so its worker surely exists.
        """
        if self.forks_worker is False:
            return self.proc.pid
        children = psutil.Process(self.proc.pid).children()
        if not children and not self.forks_worker:
            return self.proc.pid
        if len(children) == 1:
            return children[0].pid
        raise BenchError(
            f"{self.name}: expected one worker process, found {len(children)} children "
            f"(pids {', '.join(str(c.pid) for c in children)}); is worker_processes 1?"
        )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # leftover workers
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the ExitStacks that stop children


def run_main(run: Callable[[], list[str]], say: Callable[[str], None]) -> int:
    """A benchmark's `main`: run it with SIGTERM/SIGHUP unwinding cleanly, print its report;
    0 on success, 1 when a step failed, 130 on Ctrl-C."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.monotonic()
    try:
        lines = run()
    except BenchError as exc:
        say(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; everything it started has been stopped")
        return 130
    say(f"done in {time.monotonic() - started:.0f} s")
    print("\n".join(lines), flush=True)
    return 0
