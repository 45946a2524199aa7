"""Running `corral server` and NGINX (with Rancher's example NGINX configuration) as real
processes."""

from __future__ import annotations

import re
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme

from tests.support.net import free_port, port_open, wait_until
from tests.support.procs import ManagedProcess, corral_argv

ADMIN_PASSWORD = "correct-horse-battery-9"
FQDN = "corral.test"
RANCHER_EXAMPLE_NGINX_CONF = Path(__file__).with_name("rancher_example_nginx.conf")
START_TIMEOUT = 30.0


@dataclass
class CorralServer:
    """A running `corral server` process and how to reach it."""

    proc: ManagedProcess
    http_port: int
    https_port: int
    data_dir: Path
    tls_dir: Path
    args: list[str]
    env: dict[str, str]
    admin_password: str = ADMIN_PASSWORD
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca_path(self) -> Path:
        """The generated CA (present unless cert.pem/key.pem are served)."""
        return self.data_dir / "tls" / "ca.pem"

    def output(self) -> str:
        """Everything the server printed (also after it stopped)."""
        return process_output(self.proc)

    def stop(self) -> int | None:
        return self.proc.stop()

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client trusting the generated CA."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        return httpx.Client(verify=context, timeout=10, **kwargs)  # type: ignore[arg-type]

    def login_token(self) -> str:
        """A bearer token for admin (needs the v3 API)."""
        response = httpx.post(
            f"{self.http_url}/v3-public/localProviders/local?action=login",
            json={"username": "admin", "password": self.admin_password},
            headers={"X-Forwarded-Proto": "https"},
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["token"])


def server_argv(
    http_port: int, https_port: int, data_dir: Path, tls_dir: Path, args: list[str]
) -> list[str]:
    """argv of `corral server` on 127.0.0.1 with the given ports and directories."""
    return corral_argv(
        "server",
        "--bind-address", "127.0.0.1",
        "--http-listen-port", str(http_port),
        "--https-listen-port", str(https_port),
        "--data-dir", str(data_dir),
        "--tls-dir", str(tls_dir),
        *args,
    )


def server_env(base: Path, env: dict[str, str] | None) -> dict[str, str]:
    """The environment tests run the server with: known admin password, audit log in `base`."""
    full = {
        "CORRAL_BOOTSTRAP_PASSWORD": ADMIN_PASSWORD,
        "AUDIT_LEVEL": "0",
        "AUDIT_LOG_PATH": str(base / "audit" / "corral-api-audit.log"),
        "PYTHONUNBUFFERED": "1",
    }
    full.update(env or {})
    return full


def wait_ready(server: CorralServer) -> None:
    """Wait until /ping answers over HTTP (fail fast, with its output, if the process exits)."""

    def ready() -> bool:
        if not server.proc.alive():
            raise AssertionError(f"corral server exited early:\n{server.output()}")
        if not port_open(server.http_port):
            return False
        return httpx.get(f"{server.http_url}/ping", timeout=2).text == "pong"

    try:
        wait_until(ready, timeout=START_TIMEOUT, what="corral server /ping")
    except TimeoutError:
        raise AssertionError(f"corral server did not answer /ping:\n{server.output()}") from None


def start_server(
    base: Path,
    *args: str,
    env: dict[str, str] | None = None,
    data_dir: Path | None = None,
    tls_dir: Path | None = None,
    ports: tuple[int, int] | None = None,
) -> CorralServer:
    """Start `corral server` with its state under `base` and wait until it answers /ping."""
    base.mkdir(parents=True, exist_ok=True)
    http_port, https_port = ports or (free_port(), free_port())
    data_dir = data_dir or base / "data"
    tls_dir = tls_dir or base / "tls-in"
    full_env = server_env(base, env)
    proc = ManagedProcess(
        server_argv(http_port, https_port, data_dir, tls_dir, list(args)),
        env=full_env, name="corral-server",
    )
    server = CorralServer(proc, http_port, https_port, data_dir, tls_dir, list(args), full_env)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def run_server_to_exit(
    base: Path, *args: str, env: dict[str, str] | None = None, tls_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `corral server` expecting it to refuse to start; returns its exit code and output."""
    base.mkdir(parents=True, exist_ok=True)
    argv = server_argv(
        free_port(), free_port(), base / "data", tls_dir or base / "tls-in", list(args)
    )
    import os

    return subprocess.run(
        argv, env={**os.environ, **server_env(base, env)}, capture_output=True, text=True,
        timeout=60, check=False,
    )


def process_output(proc: ManagedProcess) -> str:
    """Everything a managed process printed, whether or not it is still running."""
    return proc.log_path.read_text(errors="replace")


# -- NGINX with Rancher's example NGINX configuration -----------------------------------------


@dataclass
class Nginx:
    """NGINX running Rancher's example NGINX configuration in front of a corral server."""

    proc: ManagedProcess
    tls_port: int  # the example's `listen 443 ssl http2` server
    redirect_port: int  # the example's `listen 80` server (301 to https://FQDN)
    plain_proxy_port: int  # test-only: the example's location block behind a plain-HTTP listener
    ca: Path  # trustme CA that issued the certificate for FQDN
    config: str

    def resolve(self, port: int) -> list[str]:
        """curl arguments that send FQDN:port to 127.0.0.1."""
        return ["--resolve", f"{FQDN}:{port}:127.0.0.1"]

    def stop(self) -> None:
        self.proc.stop()


def _replace_once(text: str, old: str, new: str, count: int = 1) -> str:
    found = text.count(old)
    assert found == count, f"Rancher's example config: expected {count}x {old!r}, found {found}"
    return text.replace(old, new)


def rancher_example_nginx_config(
    directory: Path, upstream_port: int, ports: tuple[int, int, int], cert: Path, key: Path
) -> str:
    """Rancher's example NGINX configuration with only what must change here substituted, plus
    one test-only server: the example's own `location /` block behind a plain-HTTP listener, so
    the corral server sees `X-Forwarded-Proto: http` from a real proxy."""
    tls_port, redirect_port, plain_port = ports
    text = RANCHER_EXAMPLE_NGINX_CONF.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("# "))
    location = re.search(r"\n        location / \{.*?\n        \}\n", text, re.S)
    assert location is not None, "Rancher's example config: no `location /` block"
    text = _replace_once(text, "server rancher-server:80;", f"server 127.0.0.1:{upstream_port};")
    text = _replace_once(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;")
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{redirect_port};")
    text = _replace_once(text, "FQDN", FQDN, count=2)
    text = _replace_once(text, "/certs/fullchain.pem", str(cert))
    text = _replace_once(text, "/certs/privkey.pem", str(key))
    paths = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _replace_once(
        text, "http {\n",
        f"http {{\n    access_log {directory / 'access.log'};\n{paths}",
    )
    plain = (
        f"\n    # test-only: plain HTTP through the example's location block\n"
        f"    server {{\n        listen 127.0.0.1:{plain_port};\n"
        f"        server_name {FQDN};\n{location.group(0)}    }}\n}}\n"
    )
    text = text.rstrip()
    assert text.endswith("}"), "Rancher's example config: does not end with the http block's }"
    text = text[:-1] + plain
    head = f"daemon off;\npid {directory / 'nginx.pid'};\nerror_log stderr notice;\n"
    return head + text


def start_nginx(directory: Path, upstream_port: int) -> Nginx:
    """Run NGINX with Rancher's example configuration (trustme certificate for FQDN) until it
    listens."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(FQDN)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    ca_path = directory / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_path))
    ports = (free_port(), free_port(), free_port())
    config = rancher_example_nginx_config(directory, upstream_port, ports, cert, key)
    conf_path = directory / "nginx.conf"
    conf_path.write_text(config)
    check = subprocess.run(
        ["nginx", "-t", "-p", str(directory), "-c", str(conf_path)],
        capture_output=True, text=True, check=False,
    )
    assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}\n{config}"
    proc = ManagedProcess(["nginx", "-p", str(directory), "-c", str(conf_path)], name="nginx")
    nginx = Nginx(proc, *ports, ca=ca_path, config=config)
    try:
        for port in ports:
            wait_until(lambda p=port: port_open(p) or _dead(proc), timeout=15,  # type: ignore[misc]
                       what=f"nginx on {port}")
        assert proc.alive(), f"nginx exited:\n{proc.output()}"
    except BaseException:
        nginx.stop()
        raise
    return nginx


def _dead(proc: ManagedProcess) -> bool:
    return not proc.alive()


# -- corral lb in front of the server ----------------------------------------------------------


@dataclass
class CorralLb:
    """`corral lb` in front of a corral server: the example's two servers plus a plain proxy."""

    proc: ManagedProcess
    tls_port: int  # TLS termination, proxy_pass to the server's HTTP port
    redirect_port: int  # 301 https://$server_name$request_uri
    plain_proxy_port: int  # test-only: proxy_pass over plain HTTP
    ca: Path
    config_path: Path

    def resolve(self, port: int) -> list[str]:
        """curl arguments that send FQDN:port to 127.0.0.1."""
        return ["--resolve", f"{FQDN}:{port}:127.0.0.1"]

    def stop(self) -> None:
        self.proc.stop()


def corral_lb_config(upstream_port: int, ports: tuple[int, int, int], cert: Path,
                     key: Path) -> dict[str, object]:
    """examples/lb.yml's shape (Rancher's example NGINX configuration) on 127.0.0.1 ports, one
    upstream."""
    tls_port, redirect_port, plain_port = ports
    return {
        "worker_processes": 1,
        "access_log": "off",
        "upstreams": {"rancher": {"servers": [f"127.0.0.1:{upstream_port}"]}},
        "servers": [
            {"listen": f"127.0.0.1:{tls_port}", "server_name": FQDN,
             "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]},
             "proxy_pass": "rancher", "read_timeout": "900s"},
            {"listen": f"127.0.0.1:{redirect_port}", "server_name": FQDN,
             "redirect": "https://$server_name$request_uri"},
            {"listen": f"127.0.0.1:{plain_port}", "server_name": FQDN, "proxy_pass": "rancher"},
        ],
    }


def start_corral_lb(directory: Path, upstream_port: int) -> CorralLb:
    """Run `corral lb` (trustme certificate for FQDN) until all its ports listen."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(FQDN)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    ca_path = directory / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_path))
    ports = (free_port(), free_port(), free_port())
    config_path = directory / "lb.yml"
    config_path.write_text(yaml.safe_dump(corral_lb_config(upstream_port, ports, cert, key)))
    proc = ManagedProcess(corral_argv("lb", "--config", str(config_path)), name="corral-lb")
    lb = CorralLb(proc, *ports, ca=ca_path, config_path=config_path)
    try:
        for port in ports:
            wait_until(lambda p=port: port_open(p) or _dead(proc), timeout=15,  # type: ignore[misc]
                       what=f"corral lb on {port}")
        assert proc.alive(), f"corral lb exited:\n{process_output(proc)}"
    except BaseException:
        lb.stop()
        raise
    return lb


# -- clients -----------------------------------------------------------------------------------


@dataclass
class CurlResponse:
    """What curl saw: status, lower-case headers (last response), body."""

    status: int
    headers: dict[str, str]
    body: str
    http_version: str


def curl(*args: str, timeout: float = 15) -> CurlResponse:
    """Run curl (no redirects followed) and parse the last response it printed."""
    done = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", str(timeout), *args],
        capture_output=True, timeout=timeout + 5, check=False,
    )
    assert done.returncode == 0, f"curl {args} failed: {done.stderr.decode(errors='replace')}"
    raw = done.stdout.decode("latin-1")
    head, _, body = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return CurlResponse(int(status), headers, body, version)
