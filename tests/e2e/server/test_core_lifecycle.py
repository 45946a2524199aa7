"""Starting, stopping, restarting, backing up and restoring `corral server` through its CLI."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from corral import pki
from tests.e2e.server.conftest import StartServer
from tests.e2e.server.core_harness import CorralServer, run_server_to_exit
from tests.support.procs import corral_argv

SECURE = {"X-Forwarded-Proto": "https"}


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a `corral` command to completion."""
    return subprocess.run(corral_argv(*args), capture_output=True, text=True, timeout=60,
                          check=False)


def login(server: CorralServer, password: str) -> httpx.Response:
    return httpx.post(
        f"{server.http_url}/v3-public/localProviders/local?action=login",
        json={"username": "admin", "password": password}, headers=SECURE, timeout=10,
    )


def test_help_teaches_every_flag() -> None:
    """`corral server --help` names every flag with its default and environment variable."""
    done = corral("server", "--help")
    assert done.returncode == 0
    text = "".join(done.stdout.split())  # help text wraps anywhere, even inside paths
    for flag, default in [
        ("--http-listen-port", "80"), ("--https-listen-port", "443"),
        ("--data-dir", "/var/lib/corral"), ("--tls-dir", "/etc/corral/ssl"),
        ("--bind-address", "0.0.0.0"), ("--audit-level", "0"),
        ("--audit-log-path", "/var/log/auditlog/corral-api-audit.log"),
        ("--audit-log-maxage", "10"), ("--audit-log-maxbackup", "10"),
        ("--audit-log-maxsize", "100"),
    ]:
        assert re.search(re.escape(flag) + r".*?default:" + re.escape(default), text), flag
    for name in ["--no-cacerts", "--server-url", "AUDIT_LEVEL", "AUDIT_LOG_PATH",
                 "AUDIT_LOG_MAXAGE", "AUDIT_LOG_MAXBACKUP", "AUDIT_LOG_MAXSIZE",
                 "CORRAL_DATA_DIR", "backup", "restore", "cert.pem", "cacerts.pem"]:
        assert name in text, name


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully(start_corral_server: StartServer, sig: int) -> None:
    """SIGTERM and SIGINT stop the server with exit code 0 and a last `stopped` line."""
    server = start_corral_server()
    server.proc.signal(sig)
    assert server.proc.proc.wait(timeout=20) == 0
    assert server.output().rstrip().endswith("corral server: stopped")


def test_sigterm_closes_open_websockets(start_corral_server: StartServer) -> None:
    """An open /v3/subscribe WebSocket is closed with 1012 (service restart) on SIGTERM and
    the server still exits 0."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = start_corral_server()
    token = server.login_token()
    with connect(f"ws://127.0.0.1:{server.http_port}/v3/subscribe",
                 additional_headers={"Authorization": f"Bearer {token}", **SECURE},
                 open_timeout=10) as socket_:
        server.proc.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket_.recv(timeout=15)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    assert server.proc.proc.wait(timeout=20) == 0


def test_generated_password_is_printed_once(start_corral_server: StartServer) -> None:
    """Without CORRAL_BOOTSTRAP_PASSWORD a password is generated, printed once, works, and must
    be changed; after a restart it is not printed again and still works."""
    server = start_corral_server(env={"CORRAL_BOOTSTRAP_PASSWORD": ""})
    match = re.search(r"bootstrap password for admin: (\S+) \(shown once", server.output())
    assert match, server.output()
    password = match.group(1)
    first = login(server, password)
    assert first.status_code == 201, first.text
    server.stop()
    again = start_corral_server(data_dir=server.data_dir, tls_dir=server.tls_dir,
                                env={"CORRAL_BOOTSTRAP_PASSWORD": ""})
    assert "bootstrap password" not in again.output()
    assert login(again, password).status_code == 201


def test_one_server_per_data_directory(corral_server: CorralServer, tmp_path: Path) -> None:
    """A second server on a data directory in use refuses, naming the owner's pid."""
    done = subprocess.run(
        [*corral_argv("server", "--bind-address", "127.0.0.1", "--http-listen-port", "0",
                      "--https-listen-port", "0", "--data-dir", str(corral_server.data_dir),
                      "--tls-dir", str(tmp_path / "none"))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert f"is in use by another corral server (pid {corral_server.proc.pid})" in done.stderr


def test_port_in_use_is_named(tmp_path: Path) -> None:
    """A busy port stops the start with the address and the flag to change."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_server_to_exit(tmp_path, "--http-listen-port", str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "choose another --http-listen-port" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before creating anything


@pytest.mark.parametrize(("args", "env", "phrase"), [
    (["--server-url", "rancher.example.com"], {}, "--server-url 'rancher.example.com' is not"),
    ([], {"AUDIT_LEVEL": "7"}, "--audit-level / AUDIT_LEVEL: AUDIT_LEVEL='7' is not valid"),
    (["--audit-log-maxsize", "0"], {}, "AUDIT_LOG_MAXSIZE='0' is not valid: use a whole number"),
])
def test_bad_settings_are_refused(tmp_path: Path, args: list[str], env: dict[str, str],
                                  phrase: str) -> None:
    """Bad flags or environment stop the start with a message naming the setting."""
    done = run_server_to_exit(tmp_path, *args, env=env)
    assert done.returncode != 0
    assert phrase in done.stderr, done.stderr


def test_audit_flags_override_environment(start_corral_server: StartServer,
                                          tmp_path: Path) -> None:
    """--audit-level and --audit-log-path win over AUDIT_LEVEL / AUDIT_LOG_PATH."""
    flag_path = tmp_path / "flag" / "audit.log"
    server = start_corral_server("--audit-level", "1", "--audit-log-path", str(flag_path),
                                 env={"AUDIT_LEVEL": "0",
                                      "AUDIT_LOG_PATH": str(tmp_path / "env.log")})
    assert "level=1 " in httpx.get(f"{server.http_url}/healthz?verbose").text
    httpx.get(f"{server.http_url}/v3/settings/cacerts", headers=SECURE)
    server.stop()  # closing the audit log writes everything queued
    assert '"requestURI":"/v3/settings/cacerts"' in flag_path.read_text().replace(" ", "")
    assert not (tmp_path / "env.log").exists()


def test_backup_wipe_restore(start_corral_server: StartServer, tmp_path: Path) -> None:
    """`corral server backup` (server running) → wipe → `corral server restore` → the restarted
    server has the same CA, the same admin and the same server-url."""
    server = start_corral_server()
    token = server.login_token()
    changed = httpx.put(f"{server.http_url}/v3/settings/server-url",
                        json={"value": "https://restored.test"},
                        headers={**SECURE, "Authorization": f"Bearer {token}"})
    assert changed.status_code == 200, changed.text
    ca_before = pki.fingerprint_sha256(pki.load_certificates(server.ca_path)[0])
    archive = tmp_path / "backup" / "corral.tar.gz"
    archive.parent.mkdir()

    done = corral("server", "backup", "--data-dir", str(server.data_dir), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    assert archive.is_file()
    refused = corral("server", "restore", "--data-dir", str(server.data_dir),
                     "--from", str(archive))
    assert refused.returncode != 0
    assert "stop the server before restoring" in refused.stderr

    server.stop()
    shutil.rmtree(server.data_dir)
    done = corral("server", "restore", "--data-dir", str(server.data_dir),
                  "--from", str(archive))
    assert done.returncode == 0, done.stderr
    assert "restored into" in done.stdout

    again = start_corral_server(data_dir=server.data_dir, tls_dir=server.tls_dir)
    assert f"SHA256 {ca_before}" in again.output()
    assert "bootstrap password" not in again.output()
    assert login(again, server.admin_password).status_code == 201
    forged = httpx.get(f"{again.http_url}/x", headers={"Host": "evil.test"})
    assert forged.headers["location"] == "https://restored.test/x"  # stored server-url applies


def test_restore_into_used_directory_needs_force(start_corral_server: StartServer,
                                                 tmp_path: Path) -> None:
    """Restoring over existing data is refused without --force and moves it aside with it."""
    server = start_corral_server()
    archive = tmp_path / "b.tar.gz"
    assert corral("server", "backup", "--data-dir", str(server.data_dir),
                  "--out", str(archive)).returncode == 0
    server.stop()
    refused = corral("server", "restore", "--data-dir", str(server.data_dir),
                     "--from", str(archive))
    assert refused.returncode != 0
    assert "--force" in refused.stderr
    forced = corral("server", "restore", "--data-dir", str(server.data_dir),
                    "--from", str(archive), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "previous content of" in forced.stdout


def test_server_module_runs_without_console_script() -> None:
    """`python -m corral.cli.main server --help` works (what the fixtures run)."""
    done = subprocess.run([sys.executable, "-m", "corral.cli.main", "server", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "Usage: corral server" in done.stdout or "Usage: " in done.stdout
