"""Processes and files for doctor's end-to-end tests: a test CA and certificates for the FQDN
`localhost`, corral servers publishing that CA, corral lb or NGINX in front of them on free
127.0.0.1 ports, and `corral doctor` itself."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml

from tests.e2e.server.core_harness import RANCHER_EXAMPLE_NGINX_CONF
from tests.support.net import free_port, port_open, wait_until
from tests.support.procs import ManagedProcess, corral_argv

FQDN = "localhost"  # resolves through /etc/hosts: nothing leaves this machine
IDLE_PASS = "2s"  # doctor's --idle in tests where the idle period must pass
DOCTOR_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class CertPair:
    """A chain file (server certificate first) and its key."""

    chain: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """The test CA (published as cacerts) and the server certificates the tests serve."""

    ca_pem: Path
    good: CertPair  # for localhost, issued by the CA
    other_name: CertPair  # for other.test, issued by the CA
    misordered: CertPair  # for localhost via two intermediates, served in the wrong order


def _write(directory: Path, name: str, pems: list[bytes], key: bytes) -> CertPair:
    chain, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    chain.write_bytes(b"".join(pems))
    key_path.write_bytes(key)
    return CertPair(chain, key_path)


def make_pki(directory: Path) -> Pki:
    """A CA and three server certificates under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="corral doctor test CA")
    ca_pem = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    good = ca.issue_cert(FQDN, common_name=FQDN)
    other = ca.issue_cert("other.test", common_name="other.test")
    deep = ca.create_child_ca().create_child_ca().issue_cert(FQDN, common_name=FQDN)
    leaf, issuing, upper = (blob.bytes() for blob in deep.cert_chain_pems)
    return Pki(
        ca_pem=ca_pem,
        good=_write(directory, "good", [b.bytes() for b in good.cert_chain_pems],
                    good.private_key_pem.bytes()),
        other_name=_write(directory, "other", [b.bytes() for b in other.cert_chain_pems],
                          other.private_key_pem.bytes()),
        misordered=_write(directory, "misordered", [leaf, upper, issuing],
                          deep.private_key_pem.bytes()),
    )


def cacerts_tls_dir(directory: Path, ca_pem: Path) -> Path:
    """A corral server TLS directory holding only cacerts.pem: TLS is terminated at the load
    balancer with a certificate from that CA, which the server publishes as cacerts."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cacerts.pem").write_bytes(ca_pem.read_bytes())
    return directory


@dataclass
class Front:
    """A load balancer (corral lb or NGINX) in front of corral servers."""

    proc: ManagedProcess
    https_port: int
    http_port: int
    config_path: Path

    @property
    def url(self) -> str:
        """What doctor is given."""
        return f"https://{FQDN}:{self.https_port}"

    def output(self) -> str:
        """What the process printed (also after it stopped)."""
        return self.proc.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process."""
        self.proc.stop()


def _wait_listening(proc: ManagedProcess, ports: tuple[int, ...], what: str) -> None:
    for port in ports:
        wait_until(lambda p=port: port_open(p) or not proc.alive(),  # type: ignore[misc]
                   timeout=20, what=f"{what} on {port}")
    assert proc.alive(), f"{what} exited:\n{proc.output()}"


def lb_config(upstreams: list[int], cert: CertPair, ports: tuple[int, int],
              **server: Any) -> dict[str, Any]:
    """Rancher's example in corral lb's form (as examples/lb.yml) on 127.0.0.1 ports: TLS for
    localhost proxying to the servers, port 80's stand-in redirecting to HTTPS."""
    https_port, http_port = ports
    return {
        "worker_processes": 1,
        "access_log": "off",
        "upstreams": {"rancher": {"servers": [f"127.0.0.1:{port}" for port in upstreams]}},
        "servers": [
            {"listen": f"127.0.0.1:{https_port}", "server_name": FQDN,
             "tls": {"certificates": [{"cert": str(cert.chain), "key": str(cert.key)}]},
             "proxy_pass": "rancher", "read_timeout": "900s", **server},
            {"listen": f"127.0.0.1:{http_port}", "server_name": FQDN,
             "redirect": f"https://$server_name:{https_port}$request_uri"},
        ],
    }


def start_lb(directory: Path, config: dict[str, Any]) -> Front:
    """Run `corral lb` with `config` until both ports listen."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lb.yml"
    path.write_text(yaml.safe_dump(config))
    ports = tuple(int(s["listen"].rsplit(":", 1)[1]) for s in config["servers"])
    proc = ManagedProcess(corral_argv("lb", "--config", str(path)), name="corral-lb")
    try:
        _wait_listening(proc, ports, "corral lb")
    except BaseException:
        proc.stop()
        raise
    return Front(proc, ports[0], ports[1], path)


def with_process_paths(text: str, directory: Path) -> str:
    """An NGINX configuration plus only what running it here needs: foreground, pid (unless it
    has one) and temp paths in `directory`, errors on stderr."""
    paths = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    assert text.count("http {\n") == 1, "no single `http {` block"
    text = text.replace("http {\n", f"http {{\n{paths}", 1)
    pid = "" if re.search(r"^pid ", text, re.M) else f"pid {directory / 'nginx.pid'};\n"
    return f"daemon off;\n{pid}error_log stderr notice;\n{text}"


def start_nginx(directory: Path, text: str, ports: tuple[int, int]) -> Front:
    """Run NGINX with `text` (plus process paths) until both ports listen; `nginx -t` first."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(with_process_paths(text, directory))
    check = subprocess.run(["nginx", "-t", "-p", str(directory), "-c", str(path)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}\n{path.read_text()}"
    proc = ManagedProcess(["nginx", "-p", str(directory), "-c", str(path)], name="nginx")
    try:
        _wait_listening(proc, ports, "nginx")
    except BaseException:
        proc.stop()
        raise
    return Front(proc, ports[0], ports[1], path)


def rancher_example(upstream: int, cert: CertPair, ports: tuple[int, int]) -> str:
    """Rancher's example NGINX configuration verbatim, with only the upstream, listen
    addresses, FQDN and certificate paths substituted."""
    https_port, http_port = ports
    text = RANCHER_EXAMPLE_NGINX_CONF.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("# ")) + "\n"
    for old, new, count in (
        ("server rancher-server:80;", f"server 127.0.0.1:{upstream};", 1),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1),
        ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        ("FQDN", FQDN, 2),
        ("/certs/fullchain.pem", str(cert.chain), 1),
        ("/certs/privkey.pem", str(cert.key), 1),
    ):
        text = change(text, old, new, count)
    return text


def change(text: str, old: str, new: str, count: int = 1) -> str:
    """`text` with `old` (found exactly `count` times) replaced by `new`."""
    found = text.count(old)
    assert found == count, f"expected {count}x {old!r} in the configuration, found {found}"
    return text.replace(old, new)


def drop_line(text: str, pattern: str) -> str:
    """`text` without the lines matching `pattern` (at least one must)."""
    lines = text.splitlines()
    kept = [line for line in lines if not re.search(pattern, line)]
    assert len(kept) < len(lines), f"no line matches {pattern!r}"
    return "\n".join(kept) + "\n"


def free_ports() -> tuple[int, int]:
    """An HTTPS and an HTTP port."""
    return free_port(), free_port()


@dataclass
class DoctorRun:
    """What `corral doctor` printed and its exit status."""

    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        """The --json report."""
        return json.loads(self.stdout)  # type: ignore[no-any-return]

    def check(self, check_id: str) -> dict[str, Any]:
        """One check of the --json report."""
        for item in self.report["checks"]:
            if item["id"] == check_id:
                return item  # type: ignore[no-any-return]
        raise KeyError(check_id)

    def statuses(self) -> dict[str, str]:
        """check id → status."""
        return {item["id"]: item["status"] for item in self.report["checks"]}

    def failed(self) -> list[str]:
        """The ids of the failed checks."""
        return [key for key, status in self.statuses().items() if status == "fail"]


def run_doctor(front: Front, *args: str, json_output: bool = True) -> DoctorRun:
    """`corral doctor` against `front` (its plain-HTTP port as --http-port)."""
    argv = corral_argv("doctor", front.url, "--http-port", str(front.http_port), *args)
    if json_output:
        argv.append("--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=DOCTOR_TIMEOUT_S,
                          check=False)
    return DoctorRun(done.returncode, done.stdout, done.stderr)
