"""The admin shell WebSocket on a real server: echo, resize, exit status, kill on close,
admin-only, audit records; and its idle behaviour behind real NGINX (Rancher's example config, a
short proxy_read_timeout) and behind `corral lb` (short read_timeout)."""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from tests.e2e.server.core_harness import (
    CorralServer,
    process_output,
    rancher_example_nginx_config,
)
from tests.e2e.server.test_api_support import (
    admin_token,
    create_user,
    running_corral_lb,
    ws_connect,
    wss_connect,
)
from tests.support.net import free_port, port_open, wait_until
from tests.support.procs import ManagedProcess

SUBPROTOCOL = "base64.channel.k8s.io"
PROXY_IDLE_TIMEOUT_S = 2  # the proxies' shortened read timeout (Rancher's example has 900 s)
SHORT_IDLE_S = 0.8  # shorter than the timeout: the shell must survive it
LONG_IDLE_S = PROXY_IDLE_TIMEOUT_S + 2.0  # longer: the proxy must cut the connection


class Shell:
    """A client of the channel framing: send stdin/resize, read stdout until a pattern."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = ""
        self.status: dict[str, Any] | None = None

    def send(self, text: str) -> None:
        self.ws.send("0" + base64.b64encode(text.encode()).decode())

    def resize(self, width: int, height: int) -> None:
        size = json.dumps({"Width": width, "Height": height}).encode()
        self.ws.send("4" + base64.b64encode(size).decode())

    def read_until(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Read stdout frames until `pattern` matches the output after the last match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output)
            if found:
                self.output = self.output[found.end():]
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {pattern!r} in shell output: {self.output!r}")
            frame = self.ws.recv(timeout=remaining)
            assert isinstance(frame, str)
            payload = base64.b64decode(frame[1:])
            if frame[0] == "1":
                self.output += payload.decode(errors="replace")
            elif frame[0] == "3":
                self.status = json.loads(payload)

    def run(self, command: str, marker: str) -> str:
        """Run `command; echo <marker>-$((1+1))` and return the output before the marker."""
        self.send(f"{command}; echo {marker}-$((1+1))\n")
        found = self.read_until(rf"(?s)^(.*){marker}-2\r?\n")
        return found.group(1)


def open_shell(server: CorralServer, token: str) -> ClientConnection:
    """A shell WebSocket straight to the server's HTTPS listener."""
    return ws_connect(server, "/v3/shell", token, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]


def process_gone(pid: int) -> bool:
    """True when `pid` no longer exists or is a zombie nobody will run again."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_shell_runs_echo(shared_corral_server: CorralServer) -> None:
    """The shell runs commands and streams their output on channel 1."""
    with open_shell(shared_corral_server, admin_token(shared_corral_server)) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        shell = Shell(ws)
        shell.send("echo hello-$((6*7))\n")
        shell.read_until(r"hello-42")


def test_shell_resize_changes_the_terminal_size(shared_corral_server: CorralServer) -> None:
    """A resize frame sets the PTY size (TIOCSWINSZ): `stty size` reports it."""
    with open_shell(shared_corral_server, admin_token(shared_corral_server)) as ws:
        shell = Shell(ws)
        shell.resize(123, 45)
        assert "45 123" in shell.run("stty size", "SIZE")
        shell.resize(80, 24)
        assert "24 80" in shell.run("stty size", "SIZE")


SLEEP_MARK = "3599.5"  # a sleep no other test runs: found by its command line


def _running(cmdline: list[str]) -> bool:
    """Whether a process with exactly this command line runs on this machine."""
    return any(proc.info["cmdline"] == cmdline
               for proc in psutil.process_iter(["cmdline"]))


def test_the_terminal_is_the_shells_controlling_terminal(
    shared_corral_server: CorralServer,
) -> None:
    """The PTY is the shell's controlling terminal: `/dev/tty` opens, and Ctrl-C (through the
    line discipline) interrupts a foreground command and returns to the prompt."""
    with open_shell(shared_corral_server, admin_token(shared_corral_server)) as ws:
        shell = Shell(ws)
        assert "CTTY-OK" in shell.run("echo CTTY-$( : </dev/tty && echo OK)", "TTY")
        shell.send(f"sleep {SLEEP_MARK}; echo after-$((2+3))\n")
        # the echo of the line comes before bash runs it: a Ctrl-C sent then reaches bash,
        # which ignores it, and the sleep starts anyway; so wait until the sleep runs
        wait_until(lambda: _running(["sleep", SLEEP_MARK]), timeout=10,
                   what="the shell's sleep to run")
        shell.send("\x03")
        assert "after-5" not in shell.run("true", "BACK"), "Ctrl-C did not stop the sleep"


def test_shell_exit_reports_status_and_closes(shared_corral_server: CorralServer) -> None:
    """`exit 3` ends the session with a Failure status frame and a normal close."""
    with open_shell(shared_corral_server, admin_token(shared_corral_server)) as ws:
        shell = Shell(ws)
        shell.run("true", "READY")
        shell.send("exit 3\n")
        with pytest.raises(ConnectionClosed) as closed:
            shell.read_until(r"never printed", timeout=10)
        assert shell.status == {"status": "Failure", "message": "exit status 3"}
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_shell_is_killed_and_reaped_when_the_socket_closes(
    shared_corral_server: CorralServer,
) -> None:
    """Closing the WebSocket ends the shell and its background jobs."""
    with open_shell(shared_corral_server, admin_token(shared_corral_server)) as ws:
        shell = Shell(ws)
        shell.send("sleep 3600 & echo PIDS $$ $!\n")
        found = shell.read_until(r"PIDS (\d+) (\d+)")
        shell_pid, job_pid = int(found.group(1)), int(found.group(2))
        assert not process_gone(shell_pid) and not process_gone(job_pid)
    wait_until(lambda: not Path(f"/proc/{shell_pid}").exists(), timeout=10,
               what="the shell to be killed and reaped")
    wait_until(lambda: process_gone(job_pid), timeout=10, what="the background job to die")


def test_shell_is_admin_only(shared_corral_server: CorralServer) -> None:
    """Users who are not admins get 403; no login gets 401."""
    _, user_token = create_user(shared_corral_server, admin_token(shared_corral_server))
    for token, status in ((user_token, 403), (None, 401)):
        with pytest.raises(InvalidStatus) as refused:
            open_shell(shared_corral_server, token)  # type: ignore[arg-type]
        assert refused.value.response.status_code == status


def test_shell_needs_the_channel_subprotocol(shared_corral_server: CorralServer) -> None:
    """Without base64.channel.k8s.io offered the handshake is a 400 that names it."""
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(shared_corral_server, "/v3/shell", admin_token(shared_corral_server))
    assert refused.value.response.status_code == 400
    assert SUBPROTOCOL in refused.value.response.body.decode()


def test_shell_open_and_close_are_audited(start_corral_server: Any) -> None:
    """With AUDIT_LEVEL=1 the audit log records the shell opening and closing for admin."""
    server: CorralServer = start_corral_server(env={"AUDIT_LEVEL": "1"})
    with open_shell(server, admin_token(server)) as ws:
        Shell(ws).run("true", "READY")
    log = Path(server.env["AUDIT_LOG_PATH"])

    def shell_records() -> list[dict[str, Any]]:
        if not log.exists():
            return []
        records = [json.loads(line) for line in log.read_text().splitlines() if line]
        return [r for r in records if r.get("event", "").startswith("shell.")]

    wait_until(lambda: len(shell_records()) == 2, timeout=10, what="shell audit records")
    records = shell_records()
    assert [r["event"] for r in records] == ["shell.open", "shell.close"]
    assert all(r["user"]["name"] == "admin" for r in records)
    assert records[1]["shell"]["pid"] == records[0]["shell"]["pid"]


# -- idle behind the proxies -------------------------------------------------------------------


def idle_then_echo(ws: ClientConnection, idle: float) -> None:
    """Stay silent for `idle` seconds (the behaviour under test), then use the shell."""
    shell = Shell(ws)
    shell.run("true", "READY")
    time.sleep(idle)
    shell.send("echo alive-$((2*21))\n")
    shell.read_until(r"alive-42", timeout=5)


def assert_idle_behaviour(connect_shell: Any) -> None:
    """A shorter idle than the proxy's timeout passes; a longer one is cut."""
    with connect_shell() as ws:
        idle_then_echo(ws, SHORT_IDLE_S)
    with connect_shell() as ws, pytest.raises(ConnectionClosed):
        idle_then_echo(ws, LONG_IDLE_S)


@pytest.fixture
def short_timeout_nginx(tmp_path: Path,
                        shared_corral_server: CorralServer) -> Iterator[tuple[int, Path]]:
    """Real NGINX with Rancher's example configuration, proxy_read_timeout shortened; yields its
    TLS port and the CA of its certificate."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("corral.test")
    cert, key, ca_path = tmp_path / "fullchain.pem", tmp_path / "privkey.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    ports = (free_port(), free_port(), free_port())
    config = rancher_example_nginx_config(
        tmp_path, shared_corral_server.http_port, ports, cert, key
    )
    assert config.count("proxy_read_timeout 900s;") == 2
    config = config.replace("proxy_read_timeout 900s;",
                            f"proxy_read_timeout {PROXY_IDLE_TIMEOUT_S}s;")
    conf_path = tmp_path / "nginx.conf"
    conf_path.write_text(config)
    check = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(conf_path)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    nginx = ManagedProcess(["nginx", "-p", str(tmp_path), "-c", str(conf_path)], name="nginx")
    try:
        wait_until(lambda: port_open(ports[0]) or not nginx.alive(), timeout=15,
                   what="nginx to listen")
        assert nginx.alive(), process_output(nginx)
        yield ports[0], ca_path
    finally:
        nginx.stop()
        print(process_output(nginx))


def test_shell_idle_behind_rancher_example_nginx(
    shared_corral_server: CorralServer, short_timeout_nginx: tuple[int, Path]
) -> None:
    """Behind NGINX with Rancher's example config (proxy_read_timeout shortened), the shell survives
    a shorter idle and is cut after a longer one, the way 900 s bounds it in production."""
    port, ca_path = short_timeout_nginx
    token = admin_token(shared_corral_server)
    context = ssl.create_default_context(cafile=str(ca_path))

    def connect_shell() -> ClientConnection:
        return wss_connect(
            port, "/v3/shell", context, server_hostname="corral.test",
            subprotocols=[SUBPROTOCOL], additional_headers={"Authorization": f"Bearer {token}"},
        )

    assert_idle_behaviour(connect_shell)


def test_shell_idle_behind_corral_lb(shared_corral_server: CorralServer, tmp_path: Path) -> None:
    """Behind `corral lb` (read_timeout shortened), the shell survives a shorter idle and is
    cut after a longer one."""
    timeout = f"{PROXY_IDLE_TIMEOUT_S}s"
    with running_corral_lb(tmp_path, shared_corral_server.http_port, timeout) as (port, certs):
        token = admin_token(shared_corral_server)
        context = certs.client_context()

        def connect_shell() -> ClientConnection:
            return wss_connect(
                port, "/v3/shell", context, server_hostname="lb.test",
                subprotocols=[SUBPROTOCOL],
                additional_headers={"Authorization": f"Bearer {token}"},
            )

        assert_idle_behaviour(connect_shell)


def test_no_server_environment_leaks_into_the_shell(shared_corral_server: CorralServer) -> None:
    """The shell's environment is clean: the bootstrap password is not in it."""
    with open_shell(shared_corral_server, admin_token(shared_corral_server)) as ws:
        env = Shell(ws).run("env", "ENV")
    assert "CORRAL_BOOTSTRAP_PASSWORD" not in env
    assert shared_corral_server.env["CORRAL_BOOTSTRAP_PASSWORD"] not in env
    assert "TERM=xterm-256color" in env
