"""What the SSH provider runs on a node, with the node's own `python3`.

Standard library only, so it runs before Corral is installed there (preflight) and after it is
gone (remove). The provider sends this file on stdin: `python3 - <operation> '<json args>'`;
the answer is one JSON object on stdout. Operations:

    facts      who runs it, python, systemd, the clock, writable paths, free disk, free ports
    install    a release: a venv from the shipped wheels (or the private registry) and etcd
    running    does the node's supervisor hold its lock
    start      start the supervisor (a systemd unit where systemd runs the node, else a
               background process in its own session) and wait until it holds its lock
    reload     SIGHUP to the supervisor
    stop       stop the supervisor, then kill whatever of the node is left
    processes  the pids of the supervisor and every process started with the node's
               CORRAL_NODE_DIR
    delete     empty and remove Corral's directories and the systemd unit
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

Args = dict[str, Any]
Result = dict[str, Any]

NODE_DIR_ENV = "CORRAL_NODE_DIR"
UNIT_DIR = "/etc/systemd/system"
START_TIMEOUT_S = 15.0
POLL_S = 0.05
LOG_TAIL_LINES = 15
INSTALL_MARKER = ".installed"
KEEP_RELEASES = 3
TCP_LISTEN = "0A"


def _nearest(path: str) -> str:
    """`path`, or its nearest ancestor that exists."""
    while not os.path.exists(path) and path not in ("/", ""):
        path = os.path.dirname(path)
    return path or "/"


def _writable(path: str) -> Result:
    """Can this user write `path` (or create it in its nearest existing ancestor); whether
    its filesystem is mounted read-only (then not even root may)."""
    at = _nearest(path)
    return {"ok": os.path.isdir(at) and os.access(at, os.W_OK | os.X_OK), "at": at,
            "exists": at == path, "read_only": bool(os.statvfs(at).f_flag & os.ST_RDONLY)}


def _free_mb(path: str) -> int:
    stat = os.statvfs(_nearest(path))
    return stat.f_bavail * stat.f_frsize // (1024 * 1024)


def _read(path: str, default: str = "") -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode(errors="replace")
    except OSError:
        return default


def _environ(pid: int) -> dict[str, str]:
    raw = _read(f"/proc/{pid}/environ")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _cmdline(pid: int) -> list[str]:
    return [a for a in _read(f"/proc/{pid}/cmdline").split("\0") if a]


def _alive(pid: int) -> bool:
    """The process runs (a zombie has ended)."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rpartition(")")[2].split()[:1] != ["Z"]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _is_supervisor(pid: int, root: str) -> bool:
    argv = _cmdline(pid)
    return "supervise" in argv and root in argv


def _namespace(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _ours(pid: int, root: str) -> bool:
    """A process of this node: it carries the node's CORRAL_NODE_DIR (or is its supervisor)
    and sees the same files (a process of another mount namespace, a container say, has
    another /var/lib/corral)."""
    return (_environ(pid).get(NODE_DIR_ENV) == root or _is_supervisor(pid, root)) and (
        _namespace(pid) == _namespace("self"))


def _node_pids(root: str) -> list[int]:
    own = os.getpid()
    return [p for p in _pids() if p != own and _alive(p) and _ours(p, root)]


def _address(hexed: str) -> str:
    """/proc/net/tcp{,6}'s local address (little-endian words in hex) as text."""
    raw = bytes.fromhex(hexed)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _listening_inodes(host: str, port: int) -> set[str]:
    """The sockets listening on host:port (or on every address at that port)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).splitlines()[1:]:
            fields = line.split()
            if len(fields) <= 9 or fields[3] != TCP_LISTEN:
                continue
            address, _, hexport = fields[1].rpartition(":")
            if int(hexport, 16) == port and _address(address) in (host, "0.0.0.0", "::"):
                inodes.add(fields[9])
    return inodes


def _holder(host: str, port: int) -> tuple[int | None, str]:
    """(pid, name) of a process listening on host:port ((None, "") when it cannot be seen)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(host, port)}
    for pid in _pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return pid, _read(f"/proc/{pid}/comm").strip()
            except OSError:
                continue
    return None, ""


def _port(host: str, port: int, root: str) -> Result | None:
    """None when host:port can be bound, else what stops it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            pid, name = _holder(host, port)
            return {"error": "in use", "pid": pid, "name": name,
                    "ours": pid is not None and _ours(pid, root)}
        if exc.errno == errno.EACCES:
            return {"error": "denied"}
        if exc.errno == errno.EADDRNOTAVAIL:
            return {"error": "no such address"}
        return {"error": os.strerror(exc.errno or 0)}
    finally:
        sock.close()


def op_facts(args: Args) -> Result:
    """Everything the preflight checks look at, read once."""
    now = time.time()
    try:
        import venv  # noqa: F401 - only whether it exists
        has_venv = True
    except ImportError:
        has_venv = False
    return {
        "time": now,
        "uid": os.getuid(),
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "python": list(sys.version_info[:3]),
        "venv": has_venv,
        "systemd": os.path.isdir("/run/systemd/system"),
        "paths": {p: _writable(p) for p in args["paths"]},
        "disk": {p: _free_mb(p) for p in args["paths"]},
        "ports": {f"{h}:{p}": _port(h, p, args["root"]) for h, p in args["ports"]},
        "installed": os.path.exists(os.path.join(args["release"], INSTALL_MARKER)),
    }


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _prune(releases: str, keep: str) -> None:
    """Delete all but the newest KEEP_RELEASES releases (never `keep`, nor one in use)."""
    try:
        names = os.listdir(releases)
    except OSError:
        return
    found = sorted((os.path.join(releases, n) for n in names
                    if os.path.isdir(os.path.join(releases, n))),
                   key=os.path.getmtime, reverse=True)
    used = " ".join(" ".join(_cmdline(p)) for p in _pids())
    for path in found[KEEP_RELEASES:]:
        if path != keep and path not in used:
            shutil.rmtree(path, ignore_errors=True)


def op_install(args: Args) -> Result:
    """A release: venv (no pip in it), pip from the shipped wheel installs the shipped wheels
    (--no-index --no-deps: the bundle is the whole set) or corral from the private registry;
    no bytecode is compiled now (Python writes it on first import). etcd is already in
    bin/."""
    release = args["release"]
    marker = os.path.join(release, INSTALL_MARKER)
    if os.path.exists(marker):
        return {"ok": True, "already": True}
    venv = os.path.join(release, "venv")
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if made.returncode != 0:
        return {"ok": False, "step": "venv", "log": _tail(made.stdout.decode(errors="replace"))}
    pip = [os.path.join(venv, "bin", "python"), os.path.join(args["pip_wheel"], "pip"),
           "install", "--disable-pip-version-check", "--no-input", "-q", "--no-compile"]
    if args.get("registry"):
        pip += ["--index-url", args["registry"], args["requirement"]]
        if args["registry"].startswith("http://"):  # plain HTTP: named so in the cluster file
            pip += ["--trusted-host", args["registry"].split("/")[2].rsplit(":", 1)[0]]
    else:
        wheels = os.path.join(release, "wheels")
        found = sorted(os.path.join(wheels, n) for n in os.listdir(wheels)
                       if n.endswith(".whl") and os.path.join(wheels, n) != args["pip_wheel"])
        pip += ["--no-index", "--no-deps", *found]
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    done = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        return {"ok": False, "step": "pip", "log": _tail(done.stdout.decode(errors="replace"))}
    for name in os.listdir(os.path.join(release, "bin")):
        os.chmod(os.path.join(release, "bin", name), 0o755)
    with open(marker, "w") as file:
        file.write(f"{time.time():f}\n")
    current = os.path.join(os.path.dirname(os.path.dirname(release)), "current")
    tmp = current + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(release, tmp)
    os.replace(tmp, current)
    _prune(os.path.dirname(release), release)
    return {"ok": True, "already": False}


def _lock_held(root: str) -> bool:
    import fcntl

    try:
        fd = os.open(os.path.join(root, "run", "supervisor.lock"), os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _supervisor_pid(root: str) -> int | None:
    try:
        pid = int(_read(os.path.join(root, "run", "supervisor.pid")).strip())
    except ValueError:
        return None
    return pid if _alive(pid) and _is_supervisor(pid, root) else None


def op_running(args: Args) -> Result:
    """Is the supervisor running (it holds the lock)."""
    root = args["root"]
    return {"running": _lock_held(root), "pid": _supervisor_pid(root)}


def _unit_path(args: Args) -> str:
    return os.path.join(UNIT_DIR, args["unit"] + ".service")


def op_start(args: Args) -> Result:
    """Start the supervisor; wait until it holds its lock (or exits)."""
    root, log_path = args["root"], args["log"]
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    if args.get("systemd") and os.path.isdir("/run/systemd/system"):
        with open(_unit_path(args), "w") as file:
            file.write(args["unit_text"])
        for command in (["daemon-reload"], ["enable", args["unit"]],
                        ["restart", args["unit"]]):
            done = subprocess.run(["systemctl", *command], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
            if done.returncode != 0:
                return {"ok": False, "log": _tail(done.stdout.decode(errors="replace"))}
    else:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SSH_") and k != NODE_DIR_ENV}
        env.update(args.get("env") or {})
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(args["argv"], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=root, env=env,
                                    start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (_lock_held(root) and _supervisor_pid(root)):
        if proc is not None and proc.poll() is not None:
            return {"ok": False, "code": proc.returncode, "log": _tail(_read(log_path))}
        if time.monotonic() > deadline:
            return {"ok": False, "log": _tail(_read(log_path)), "timeout": START_TIMEOUT_S}
        time.sleep(POLL_S)
    return {"ok": True, "pid": _supervisor_pid(root)}


def op_reload(args: Args) -> Result:
    """SIGHUP to the running supervisor."""
    pid = _supervisor_pid(args["root"])
    if pid is None:
        return {"ok": False}
    os.kill(pid, signal.SIGHUP)
    return {"ok": True}


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(POLL_S)


def op_stop(args: Args) -> Result:
    """SIGTERM the supervisor (systemctl stop for the unit), wait; SIGKILL what is left."""
    root, timeout = args["root"], float(args["timeout"])
    if os.path.exists(_unit_path(args)) and os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "stop", args["unit"]], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    pid = _supervisor_pid(root)
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        _wait_gone([pid], timeout)
    killed = 0
    left = _node_pids(root)
    for leftover in left:
        try:
            os.kill(leftover, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    _wait_gone(left, timeout)
    return {"killed": killed, "left": _node_pids(root)}


def _children(pid: int) -> list[int]:
    found = []
    for child in _pids():
        fields = _read(f"/proc/{child}/stat").rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid) and _alive(child):
            found.append(child)
    return found


def op_hang_up(args: Args) -> Result:
    """SIGHUP to process `pid` of the node; its children before the signal."""
    pid = int(args["pid"])
    if not _alive(pid) or not _ours(pid, args["root"]):
        return {"children": []}
    children = _children(pid)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return {"children": []}
    return {"children": children}


def op_still_running(args: Args) -> Result:
    """Those of `pids` that still run."""
    return {"pids": [int(p) for p in args["pids"] if _alive(int(p))]}


def op_processes(args: Args) -> Result:
    """The node's live processes."""
    return {"pids": _node_pids(args["root"])}


def op_delete(args: Args) -> Result:
    """Empty Corral's directories and remove them (a mount point stays, empty); drop the
    systemd unit."""
    for path in args["dirs"]:
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for name in names:
            child = os.path.join(path, name)
            if os.path.isdir(child) and not os.path.islink(child):
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(child)
        with contextlib.suppress(OSError):
            os.rmdir(path)
    if os.path.exists(_unit_path(args)):
        os.unlink(_unit_path(args))
        if os.path.isdir("/run/systemd/system"):
            subprocess.run(["systemctl", "daemon-reload"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return {"ok": True}


OPERATIONS: dict[str, Callable[[Args], Result]] = {
    "facts": op_facts, "install": op_install, "running": op_running, "start": op_start,
    "reload": op_reload, "stop": op_stop, "processes": op_processes, "delete": op_delete,
    "hang_up": op_hang_up, "still_running": op_still_running,
}


def main(argv: list[str]) -> int:
    """`python3 - <operation> <json>`: one JSON object on stdout."""
    try:
        result = OPERATIONS[argv[1]](json.loads(argv[2]))
    except Exception as exc:  # the provider reports it with the node's name
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
