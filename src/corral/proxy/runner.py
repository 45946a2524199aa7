"""Process model: one worker in-process, or a master that forks `worker_processes` workers.

Each worker binds the listeners itself with SO_REUSEPORT, so the kernel spreads connections
across workers, and runs its own uvloop event loop. The master restarts a worker that dies and
forwards SIGTERM/SIGINT for a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time

import uvloop

from corral.config.lb import LbConfig
from corral.proxy.engine import Engine
from corral.proxy.listener import ListenerSpec, bind, group_listeners

RESTART_BACKOFF_S = 1.0


def run(config: LbConfig) -> int:
    """Run the load balancer until SIGTERM/SIGINT; returns the exit status."""
    if config.worker_rlimit_nofile:
        _raise_nofile(config.worker_rlimit_nofile)
    specs = group_listeners(config)
    workers = config.worker_count
    if workers == 1:
        try:
            sockets = [bind(spec, reuse_port=False) for spec in specs]
        except OSError as exc:
            _say(f"cannot listen: {exc}")
            return 1
        _announce(specs, workers)
        return _worker(config, specs, sockets)
    try:  # fail early and clearly if a port is taken, before forking anything
        for spec in specs:
            bind(spec, reuse_port=True).close()
    except OSError as exc:
        _say(f"cannot listen: {exc}")
        return 1
    _announce(specs, workers)
    return _master(config, specs, workers)


def _worker(config: LbConfig, specs: list[ListenerSpec], sockets: list[socket.socket]) -> int:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        engine = Engine(config, loop)
        await engine.start(list(zip(specs, sockets, strict=True)))
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await engine.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
    return 0


def _master(config: LbConfig, specs: list[ListenerSpec], count: int) -> int:
    children: dict[int, int] = {}  # pid -> worker slot
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                sockets = [bind(spec, reuse_port=True) for spec in specs]
                code = _worker(config, specs, sockets)
            except BaseException as exc:
                _say(f"worker {slot} failed: {exc!r}")
            finally:
                os._exit(code)
        children[pid] = slot

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(count):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, -1)
        if slot < 0 or stopping:
            continue
        _say(f"worker {slot} (pid {pid}) exited with status {status}; starting a new one")
        time.sleep(RESTART_BACKOFF_S)  # a worker that dies at once must not spin the master
        spawn(slot)
    return 0


def _raise_nofile(limit: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
    except (ValueError, OSError) as exc:
        _say(f"cannot raise the open-files limit to {limit} (now {soft}/{hard}): {exc}")


def _announce(specs: list[ListenerSpec], workers: int) -> None:
    for spec in specs:
        _say(f"listening on {spec.describe()}")
    _say(f"{workers} worker process{'es' if workers > 1 else ''}, pid {os.getpid()}")


def _say(message: str) -> None:
    print(f"corral lb: {message}", file=sys.stderr, flush=True)
