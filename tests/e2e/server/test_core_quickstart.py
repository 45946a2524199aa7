"""scripts/quickstart's core: corral server behind corral lb on this machine, from one command."""

from __future__ import annotations

import re
import signal
import ssl
import sys
from pathlib import Path

import httpx

from corral import pki
from tests.support.net import free_port, port_open, wait_until
from tests.support.procs import ManagedProcess

REPO = Path(__file__).resolve().parents[3]


def printed(output: str, pattern: str) -> str:
    """The first group of `pattern` in the quickstart's output."""
    match = re.search(pattern, output)
    assert match, f"{pattern!r} not in:\n{output}"
    return match.group(1)


def test_quickstart_serves_through_the_lb_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The printed URL answers /ping through corral lb with the printed CA, the printed admin
    password logs in, plain HTTP is 301 to it, and Ctrl-C stops both processes."""
    ports = [free_port() for _ in range(4)]
    proc = ManagedProcess(
        [sys.executable, str(REPO / "scripts" / "quickstart.py"), "--dir", str(tmp_path / "qs"),
         "--https-port", str(ports[0]), "--http-port", str(ports[1]),
         "--server-http-port", str(ports[2]), "--server-https-port", str(ports[3])],
        env={"CORRAL_BOOTSTRAP_PASSWORD": ""}, cwd=REPO, name="quickstart",
    )
    try:
        wait_until(lambda: "Ctrl-C stops both." in proc.output() or not proc.alive(),
                   timeout=60, what="the quickstart summary")
        output = proc.output()
        assert proc.alive(), output
        url = printed(output, r"URL:\s+(\S+)")
        fingerprint = printed(output, r"CA fingerprint:\s+SHA256 (\S+)")
        password = printed(output, r"admin password:\s+(\S+)")
        assert url == f"https://localhost:{ports[0]}"

        ca_file = tmp_path / "qs" / "data" / "tls" / "ca.pem"
        assert pki.fingerprint_sha256(pki.load_certificates(ca_file)[0]) == fingerprint
        trust = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(verify=trust, timeout=10) as client:
            assert client.get(f"{url}/ping").text == "pong"
            assert client.get(f"{url}/cacerts").text == ca_file.read_text()
            login = client.post(f"{url}/v3-public/localProviders/local?action=login",
                                json={"username": "admin", "password": password})
            assert login.status_code == 201, login.text
        redirect = httpx.get(f"http://localhost:{ports[1]}/v3?x=1")
        assert redirect.status_code == 301
        assert redirect.headers["location"] == f"{url}/v3?x=1"
        assert output.count(password) == 1  # shown once, in the summary only

        proc.signal(signal.SIGINT)
        assert proc.proc.wait(timeout=30) == 0
        assert not any(port_open(port) for port in ports)
    finally:
        proc.stop()


def test_quickstart_script_installs_first() -> None:
    """scripts/quickstart runs scripts/setup before the core (the README's one command)."""
    text = (REPO / "scripts" / "quickstart").read_text()
    assert text.index("scripts/setup") < text.index("scripts/quickstart.py")
