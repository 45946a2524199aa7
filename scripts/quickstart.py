"""The core of scripts/quickstart: the system of Rancher's single-node guide on this machine.

    client ──HTTPS :8443──▶ corral lb ──HTTP :8081──▶ corral server (embedded store, its own CA)
           ──HTTP  :8080──▶ corral lb: 301 https://localhost:8443<uri>

Starts `corral server` (data in ./.corral/data, CA generated there on first start), issues a
certificate for localhost from that CA for `corral lb` (fresh on every start), writes the lb
configuration (Rancher's example NGINX configuration in corral lb's form), starts `corral lb`,
waits until https://localhost:8443/ping answers through the lb, prints the URL, the CA fingerprint
and the bootstrap password, and runs in the foreground until Ctrl-C (or SIGTERM), which stops both.

Run it with `scripts/quickstart` (which installs first); this file needs the corral package.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType

from corral import pki

PASSWORD_LINE = re.compile(r"bootstrap password for admin: (\S+) \(shown once")
START_TIMEOUT_SECONDS = 60.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".corral"),
                        help="state directory (default ./.corral; data in <dir>/data)")
    parser.add_argument("--https-port", type=int, default=8443, help="lb HTTPS port (8443)")
    parser.add_argument("--http-port", type=int, default=8080,
                        help="lb HTTP port, 301 to HTTPS (8080)")
    parser.add_argument("--server-http-port", type=int, default=8081,
                        help="corral server's HTTP port, the lb's upstream (8081)")
    parser.add_argument("--server-https-port", type=int, default=8444,
                        help="corral server's own HTTPS port (8444)")
    return parser.parse_args(argv)


def corral(*args: str) -> list[str]:
    return [sys.executable, "-m", "corral.cli.main", *args]


class Child:
    """A child process in its own process group; its output is copied to ours with a prefix."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._copy, daemon=True)
        self._reader.start()

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if not PASSWORD_LINE.search(line):  # the password is shown once, in the summary
                print(f"[{self.name}] {line}", end="", file=sys.stderr, flush=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def wait_for(what: str, condition: object, children: list[Child]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        for child in children:
            if not child.alive():
                raise SystemExit(f"quickstart: {child.name} exited while waiting for {what}")
        try:
            if condition():  # type: ignore[operator]
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"quickstart: timed out waiting for {what}")
        time.sleep(0.1)


def issue_lb_certificate(data_dir: Path, lb_dir: Path) -> None:
    """A certificate for localhost from the server's CA, for corral lb's TLS listener."""
    tls = data_dir / "tls"
    ca = pki.load_certificates(tls / "ca.pem")[0]
    ca_key = pki.load_private_key(tls / "ca-key.pem")
    cert, key = pki.issue_certificate(ca, ca_key, common_name="localhost",
                                      dns_names=["localhost"], ip_addresses=["127.0.0.1", "::1"])
    lb_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = lb_dir / "key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(pki.private_key_pem(key))
    (lb_dir / "cert.pem").write_bytes(pki.certificate_pem(cert))


def lb_config(args: argparse.Namespace, lb_dir: Path) -> str:
    """Rancher's example NGINX configuration in corral lb's form, for this machine."""
    return f"""\
# Written by scripts/quickstart: Rancher's example NGINX configuration for localhost.
worker_processes: 1
access_log: "off"
upstreams:
  rancher:
    servers: ["127.0.0.1:{args.server_http_port}"]
servers:
  - listen: "127.0.0.1:{args.https_port}"
    server_name: localhost
    tls:
      certificates:
        - cert: {lb_dir / "cert.pem"}
          key: {lb_dir / "key.pem"}
    proxy_pass: rancher
    read_timeout: 900s
  - listen: "127.0.0.1:{args.http_port}"
    server_name: localhost
    redirect: https://localhost:{args.https_port}$request_uri
"""


def answers_ping(url: str, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(f"{url}/ping", context=context, timeout=2) as response:
        return bool(response.read() == b"pong")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    state = args.dir.resolve()
    data_dir, lb_dir = state / "data", state / "lb"
    url = f"https://localhost:{args.https_port}"
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[Child] = []
    try:
        server = Child("server", corral(
            "server", "--bind-address", "127.0.0.1",
            "--http-listen-port", str(args.server_http_port),
            "--https-listen-port", str(args.server_https_port),
            "--data-dir", str(data_dir), "--tls-dir", str(state / "tls-in"),
            "--server-url", url,
        ))
        children.append(server)
        wait_for("corral server", lambda: any("listening on" in li for li in server.lines),
                 children)
        issue_lb_certificate(data_dir, lb_dir)
        config = lb_dir / "lb.yml"
        config.write_text(lb_config(args, lb_dir))
        children.append(Child("lb", corral("lb", "--config", str(config))))
        ca_file = data_dir / "tls" / "ca.pem"
        wait_for(f"{url}/ping through corral lb", lambda: answers_ping(url, ca_file), children)
        print_summary(url, args, ca_file, server.lines)
        while not stop.is_set():
            for child in children:
                if not child.alive():
                    print(f"quickstart: {child.name} stopped unexpectedly", file=sys.stderr)
                    return 1
            stop.wait(0.5)
        print("quickstart: stopping corral lb and corral server", file=sys.stderr, flush=True)
        return 0
    finally:
        for child in reversed(children):
            child.stop()


def print_summary(url: str, args: argparse.Namespace, ca_file: Path, lines: list[str]) -> None:
    ca = pki.load_certificates(ca_file)[0]
    password = next((m.group(1) for li in lines if (m := PASSWORD_LINE.search(li))), "")
    if not password:
        password = ("(from CORRAL_BOOTSTRAP_PASSWORD)" if os.environ.get(
            "CORRAL_BOOTSTRAP_PASSWORD") else "(printed on the first start only; to start over, "
            f"stop and remove {args.dir})")
    print(f"""
Corral is running: corral lb (TLS) -> corral server (embedded store) on this machine.

  URL:              {url}
  CA fingerprint:   SHA256 {pki.fingerprint_sha256(ca)}  ({pki.common_name(ca)}, file {ca_file})
  admin password:   {password}
  plain HTTP:       http://localhost:{args.http_port} -> 301 {url}

  curl --cacert {ca_file} {url}/ping
  curl --cacert {ca_file} '{url}/v3-public/localProviders/local?action=login' \\
       -H 'content-type: application/json' -d '{{"username":"admin","password":"..."}}'

Ctrl-C stops both.
""", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
