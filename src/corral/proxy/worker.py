"""A worker process: one uvloop event loop running one Engine on the master's sockets.

Signals: SIGTERM = graceful stop (`shutdown_timeout`); SIGQUIT = drain for a reload (keep
serving what is open, WebSockets included, for at most `drain_timeout`). SIGINT is the master's
business (a terminal sends it to the whole group). A worker whose master died stops by itself.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket

import uvloop

from corral.config.lb import LbConfig
from corral.proxy.engine import Engine
from corral.proxy.listener import ListenerSpec

PARENT_CHECK_S = 1.0
# Every request allocates a few dozen short-lived objects that reference counting frees; the
# cyclic collector's default gen-0 threshold (700) makes it run every few requests for nothing.
GC_GEN0_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Freeze start-up objects out of the collector's view and collect young objects rarely."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run_worker(
    config: LbConfig, listeners: list[tuple[ListenerSpec, socket.socket]], *, metrics: bool
) -> int:
    """Serve until told to stop; returns the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    master = os.getppid()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        engine = Engine(config, loop)
        if metrics:
            from corral.proxy.metrics import Publisher  # imported after the env var is set

            engine.on_tick.append(Publisher(engine).publish)
        # Each worker serves a duplicate of the master's socket, so closing ours (to stop
        # accepting) leaves the listening socket itself open for the next generation.
        await engine.start([(spec, sock.dup()) for spec, sock in listeners])
        _tune_gc()
        done = asyncio.Event()
        mode = ["shutdown"]

        def stop(how: str) -> None:
            mode[0] = how
            done.set()

        loop.add_signal_handler(signal.SIGTERM, stop, "shutdown")
        loop.add_signal_handler(signal.SIGQUIT, stop, "drain")

        def watch_parent() -> None:
            if os.getppid() != master:
                stop("shutdown")
            else:
                loop.call_later(PARENT_CHECK_S, watch_parent)

        loop.call_later(PARENT_CHECK_S, watch_parent)
        await done.wait()
        if mode[0] == "drain":
            await engine.drain(config.drain_timeout)
        else:
            await engine.shutdown(config.shutdown_timeout)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
    return 0
