"""`/v3/shell`: an admin-only WebSocket running a PTY shell on the server host.

Framing is Kubernetes' `base64.channel.k8s.io` subprotocol: every text frame is one channel
digit and a base64 payload. Client → server: `0` stdin bytes, `4` resize
`{"Width":W,"Height":H}`. Server → client: `1` stdout (the PTY merges stderr), `3` the final
status `{"status":"Success"|"Failure","message":…}` when the shell exits. Closing the socket
hangs the shell up (SIGHUP to its process group, SIGKILL after KILL_GRACE_SECONDS) and reaps it.

The PTY master is non-blocking and driven by `loop.add_reader`/`add_writer`; the shell's exit is
seen through a pidfd: no thread per shell.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import fcntl
import json
import logging
import os
import pwd
import signal
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from corral.server.api.errors import APIError, BadRequest
from corral.server.api.ws import deny, handshake_principal
from corral.server.context import ServerContext
from corral.server.domain.tokens import Principal
from corral.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SUBPROTOCOL = "base64.channel.k8s.io"
SHELL_CANDIDATES = ("/bin/bash", "/bin/sh")
STDIN, STDOUT, STDERR, STATUS, RESIZE = "0", "1", "2", "3", "4"
READ_CHUNK = 64 * 1024
MAX_QUEUED_OUTPUT = 16  # chunks waiting for the socket before the PTY is no longer read
KILL_GRACE_SECONDS = 2.0
DEFAULT_SIZE = (80, 24)  # columns, rows until the client sends a resize
MAX_DIMENSION = 10_000


class FrameError(ValueError):
    """A client frame that does not follow the channel framing."""


def decode_frame(frame: str | bytes) -> tuple[str, bytes]:
    """(channel digit, payload bytes) of one client frame."""
    text = frame.decode("ascii", "replace") if isinstance(frame, bytes) else frame
    if not text or text[0] not in "01234":
        raise FrameError("frame must start with a channel digit 0-4")
    try:
        return text[0], base64.b64decode(text[1:], validate=True)
    except binascii.Error:
        raise FrameError(f"channel {text[0]} payload is not valid base64") from None


def encode_frame(channel: str, payload: bytes) -> str:
    """One server frame: the channel digit and the base64 payload."""
    return channel + base64.b64encode(payload).decode("ascii")


def parse_resize(payload: bytes) -> tuple[int, int]:
    """(columns, rows) of a resize payload `{"Width":W,"Height":H}`."""
    try:
        size = json.loads(payload)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError):
        raise FrameError('resize payload must be {"Width": <int>, "Height": <int>}') from None
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise FrameError(f"resize {width}x{height} is out of range 1..{MAX_DIMENSION}")
    return width, height


def shell_program() -> str:
    """The first shell that exists here."""
    for candidate in SHELL_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"no shell found (looked for {', '.join(SHELL_CANDIDATES)})")


def shell_environment() -> tuple[dict[str, str], str]:
    """A clean login-like environment (nothing of the server's own, such as bootstrap
    secrets) and the home directory to start in."""
    entry = pwd.getpwuid(os.getuid())
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": entry.pw_dir,
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "SHELL": entry.pw_shell or "/bin/sh",
        "TERM": "xterm-256color",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    home = entry.pw_dir if os.path.isdir(entry.pw_dir) else "/"
    return env, home


def set_window_size(fd: int, columns: int, rows: int) -> None:
    """TIOCSWINSZ on a terminal fd (the kernel sends SIGWINCH to its foreground group)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def session_members(session_id: int) -> list[int]:
    """Pids of the processes in a session (Linux /proc; zombies left out)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # fields after "comm)": state ppid pgrp session ...
        if int(fields[3]) == session_id and fields[0] != b"Z":
            members.append(int(entry.name))
    return members


def signal_session(session_id: int, signum: int) -> None:
    """Send `signum` to every process of a session (jobs of an interactive shell have their
    own process groups, so a process-group signal would miss them)."""
    for pid in session_members(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


# The shell is started through a one-line wrapper run by the same shell: as the leader of a
# new session it reopens the PTY slave by path, which makes the PTY its controlling terminal
# (a session leader without one acquires the first terminal it opens), then execs the shell.
# A `preexec_fn` calling TIOCSCTTY would do the same in Python, but it forces a plain fork()
# of this multi-threaded process, and fork handlers of libraries such as gRPC (the etcd
# client) can abort the child; without `preexec_fn` subprocess spawns with vfork.
ACQUIRE_TERMINAL = 'exec 0<>"$1" 1>&0 2>&0 && exec "$0"'


def shell_argv(program: str, terminal: str) -> list[str]:
    """argv that starts `program` with the terminal at path `terminal` as its controlling
    terminal and its stdin, stdout and stderr."""
    return [program, "-c", ACQUIRE_TERMINAL, program, terminal]


@dataclass
class ShellExit:
    """How the shell ended."""

    code: int | None  # exit status, or None when killed by a signal
    signal: int | None


class PtyShell:
    """A shell on a PTY, read and written through the event loop."""

    def __init__(self, on_output: Callable[[bytes], None], on_done: Callable[[], None]) -> None:
        self._on_output = on_output
        self._on_done = on_done
        self._loop = asyncio.get_running_loop()
        self.master = -1
        self.proc: subprocess.Popen[bytes] | None = None
        self._pidfd = -1
        self._pending_input = bytearray()
        self._reading = False
        self.exited = asyncio.Event()
        self.result = ShellExit(None, None)

    @property
    def pid(self) -> int:
        """The shell's process id (also its process group id)."""
        return self.proc.pid if self.proc else -1

    def start(self, columns: int, rows: int) -> None:
        """Open the PTY and start the shell in its own session with the PTY as its terminal."""
        env, home = shell_environment()
        master, slave = os.openpty()
        try:
            set_window_size(master, columns, rows)
            self.proc = subprocess.Popen(
                shell_argv(shell_program(), os.ttyname(slave)),
                stdin=slave,  # held from the start, so the PTY never looks hung up
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=home,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master = master
        os.set_blocking(master, False)
        self._pidfd = os.pidfd_open(self.proc.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self.resume_output()

    def resize(self, columns: int, rows: int) -> None:
        """Change the terminal size."""
        if self.master >= 0:
            set_window_size(self.master, columns, rows)

    def write(self, data: bytes) -> None:
        """Queue stdin bytes; written as the PTY accepts them."""
        if self.master < 0 or not data:
            return
        had_pending = bool(self._pending_input)
        self._pending_input += data
        if not had_pending:
            self._flush_input()

    def _flush_input(self) -> None:
        try:
            while self._pending_input:
                written = os.write(self.master, self._pending_input)
                del self._pending_input[:written]
        except BlockingIOError:
            self._loop.add_writer(self.master, self._flush_input)
            return
        except OSError:  # the shell is gone; its exit is reported by the pidfd
            self._pending_input.clear()
        self._loop.remove_writer(self.master)

    def pause_output(self) -> None:
        """Stop reading the PTY (the socket is behind)."""
        if self._reading:
            self._loop.remove_reader(self.master)
            self._reading = False

    def resume_output(self) -> None:
        """Read the PTY again."""
        if not self._reading and self.master >= 0:
            self._loop.add_reader(self.master, self._read_output)
            self._reading = True

    def _read_output(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: every slave fd is closed
                log.warning("reading the shell's terminal failed: %s", exc)
            data = b""
        if data:
            self._on_output(data)
            return
        self.pause_output()
        self._on_done()

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        assert self.proc is not None
        _, status = os.waitpid(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        code = self.proc.returncode
        self.result = ShellExit(code if code >= 0 else None, -code if code < 0 else None)
        self.exited.set()
        self._drain_after_exit()

    def _drain_after_exit(self) -> None:
        """Read what the shell left in the PTY, then report done (a background job that
        still holds the terminal does not keep the session open)."""
        while self._reading:
            try:
                data = os.read(self.master, READ_CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            self._on_output(data)
        self.pause_output()
        self._on_done()

    async def close(self) -> None:
        """Hang the shell's session up (the shell and every job it started, whatever their
        process group), kill what lingers, reap the shell and release the PTY."""
        if self.proc is not None:
            session = self.proc.pid
            signal_session(session, signal.SIGHUP)
            if not self.exited.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KILL_GRACE_SECONDS):
                        await self.exited.wait()
            signal_session(session, signal.SIGKILL)
            await self.exited.wait()
        self.pause_output()
        if self.master >= 0:
            self._loop.remove_writer(self.master)
            os.close(self.master)
            self.master = -1
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_shell(ctx: ServerContext, websocket: WebSocket, principal: Principal,
                event: str, details: dict[str, Any]) -> None:
    """One audit record for a shell opening or closing (when the audit log is on)."""
    if ctx.audit is None:
        return
    client = websocket.scope.get("client")
    now = _iso(time.time())
    record = {
        "auditID": str(uuid.uuid4()),
        "requestURI": websocket.url.path,
        "user": principal.audit_user(),
        "method": "GET",
        "remoteAddr": f"{client[0]}:{client[1]}" if client else "",
        "requestTimestamp": now,
        "responseTimestamp": now,
        "responseCode": 101,
        "event": event,
        "shell": details,
    }
    try:
        ctx.audit.write(record)
    except Exception:  # the audit log never fails the request
        log.exception("could not write the shell audit record")


class ShellSession:
    """One accepted shell WebSocket: PTY output → frames, frames → stdin/resize."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pty = PtyShell(self._on_output, lambda: self.output.put_nowait(None))

    def _on_output(self, data: bytes) -> None:
        self.output.put_nowait(data)
        if self.output.qsize() >= MAX_QUEUED_OUTPUT:
            self.pty.pause_output()

    async def send_output(self) -> None:
        """Frames of PTY output until the shell is done, then its exit status."""
        while (chunk := await self.output.get()) is not None:
            await self.websocket.send_text(encode_frame(STDOUT, chunk))
            if self.output.qsize() < MAX_QUEUED_OUTPUT // 2:
                self.pty.resume_output()
        await self.pty.exited.wait()
        result = self.pty.result
        if result.code == 0:
            status = {"status": "Success", "message": "exit status 0"}
        else:
            how = f"signal {result.signal}" if result.signal else f"exit status {result.code}"
            status = {"status": "Failure", "message": how}
        await self.websocket.send_text(encode_frame(STATUS, json.dumps(status).encode()))
        await self.websocket.close(code=1000)

    async def receive_input(self) -> None:
        """Apply client frames until the client leaves (a malformed frame closes with 1008)."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                frame = message.get("text") or message.get("bytes") or ""
                try:
                    channel, payload = decode_frame(frame)
                    if channel == STDIN:
                        self.pty.write(payload)
                    elif channel == RESIZE:
                        self.pty.resize(*parse_resize(payload))
                except FrameError as exc:
                    await self.websocket.close(code=1008, reason=str(exc)[:120])
                    return


class ShellAPI:
    """The `/v3/shell` WebSocket endpoint."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        """`/v3/shell`."""
        return [WebSocketRoute("/v3/shell", self.shell, name="shell")]

    async def shell(self, websocket: WebSocket) -> None:
        """Admins only, with the `base64.channel.k8s.io` subprotocol."""
        try:
            principal = handshake_principal(websocket, admin=True)
            offered = websocket.scope.get("subprotocols", [])
            if SUBPROTOCOL not in offered:
                raise BadRequest(
                    f"the shell speaks the {SUBPROTOCOL} subprotocol; offer it in "
                    "Sec-WebSocket-Protocol"
                )
        except APIError as error:
            await deny(websocket, error)
            return
        await websocket.accept(subprotocol=SUBPROTOCOL)
        session = ShellSession(websocket)
        started = time.monotonic()
        try:
            session.pty.start(*DEFAULT_SIZE)
        except OSError as exc:
            message = {"status": "Failure", "message": f"cannot start a shell: {exc}"}
            await websocket.send_text(encode_frame(STATUS, json.dumps(message).encode()))
            await websocket.close(code=1011)
            return
        audit_shell(self.ctx, websocket, principal, "shell.open", {"pid": session.pty.pid})
        tasks = [
            asyncio.create_task(session.send_output()),
            asyncio.create_task(session.receive_input()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(tasks)
            await session.pty.close()
            with contextlib.suppress(Exception):
                await websocket.close()
            result = session.pty.result
            audit_shell(self.ctx, websocket, principal, "shell.close", {
                "pid": session.pty.pid,
                "exitCode": result.code,
                "signal": result.signal,
                "durationSeconds": round(time.monotonic() - started, 3),
            })
