"""Access log lines, no secrets in any log, and `--check` validating a configuration."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.lb.clients import (
    get_request,
    https_client,
    plain_connect,
    read_response,
    tls_exchange,
)
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import REPO_ROOT, Backend, Certs, lb_config
from tests.support.net import free_port, wait_until
from tests.support.procs import corral_argv

LINE = re.compile(
    r'^(?P<client>\S+) "(?P<method>[A-Z]+|-) (?P<path>\S+) HTTP/(?P<version>1\.[01]|2\.0)" '
    r"(?P<status>\d{3}) (?P<bytes>\d+) (?P<upstream>\S+) (?P<seconds>\d+(?:\.\d+)?)$"
)
SECRETS = ("s3cret-bearer", "s3cret-cookie", "s3cret-query", "s3cret-basic", "s3cret-proxy")


def log_lines(path: Path, count: int) -> list[re.Match[str]]:
    """Wait until the access log holds `count` lines; return them parsed (each must parse)."""
    lines = wait_until(
        lambda: path.exists() and len(text := path.read_text().splitlines()) >= count and text,
        timeout=20,
        what=f"{count} access log lines in {path}",
    )
    assert lines
    parsed = []
    for line in lines:
        match = LINE.match(line)
        assert match, f"access log line not in the documented format: {line!r}"
        parsed.append(match)
    return parsed


@pytest.fixture
def backend(backends: StartBackends) -> Backend:
    return backends(1)[0]


def test_access_log_line_per_request(
    certs: Certs, backend: Backend, start_lb: StartLb, tmp_path: Path
) -> None:
    """One line per request: client, method, path without query, status, bytes, upstream, time."""
    log = tmp_path / "access.log"
    lb = start_lb(lb_config(certs, [backend], access_log=log))
    with https_client(certs, lb.port) as client:
        assert client.get("/echo?page=2").status_code == 200
        assert client.get("/status/404").status_code == 404
        assert client.post("/upload", content=b"u" * 1000).status_code == 200
        assert client.get("/bytes/5000").status_code == 200
    lines = log_lines(log, 4)
    assert len(lines) == 4
    expected = [("GET", "/echo", "200"), ("GET", "/status/404", "404")]
    expected += [("POST", "/upload", "200"), ("GET", "/bytes/5000", "200")]
    assert [(m["method"], m["path"], m["status"]) for m in lines] == expected
    for match in lines:
        assert match["client"] == "127.0.0.1"
        assert match["version"] == "1.1"
        assert match["upstream"] == backend.address
        assert float(match["seconds"]) >= 0
    assert int(lines[3]["bytes"]) >= 5000


def test_access_log_redirect_has_no_upstream(
    certs: Certs, backend: Backend, start_lb: StartLb, tmp_path: Path
) -> None:
    """A redirect answered by the lb itself is logged with status 301 and upstream '-'."""
    log = tmp_path / "access.log"
    lb = start_lb(lb_config(certs, [backend], access_log=log, redirect=True))
    with plain_connect(lb.ports[1]) as sock:
        sock.sendall(get_request("/x?y=1"))
        assert read_response(sock).status == 301
    (line,) = log_lines(log, 1)
    assert (line["method"], line["path"], line["status"], line["upstream"]) == (
        "GET",
        "/x",
        "301",
        "-",
    )


def test_access_log_defaults_to_stdout(certs: Certs, backend: Backend, start_lb: StartLb) -> None:
    """Without access_log set, the lines go to the lb's standard output."""
    config = lb_config(certs, [backend])
    del config["access_log"]
    lb = start_lb(config)
    with https_client(certs, lb.port) as client:
        assert client.get("/status/202").status_code == 202
    wait_until(lambda: '"GET /status/202 HTTP/1.1" 202' in lb.output(), timeout=20)


def test_no_secrets_in_logs(
    certs: Certs, backend: Backend, start_lb: StartLb, tmp_path: Path
) -> None:
    """Authorization, cookies and query strings never reach the access log or the lb's output."""
    log = tmp_path / "access.log"
    dead = f"127.0.0.1:{free_port()}"
    lb = start_lb(lb_config(certs, [backend], access_log=log))
    secret_headers = {
        "Authorization": "Bearer token-abcde:s3cret-bearer",
        "Cookie": "R_SESS=s3cret-cookie; other=1",
        "Proxy-Authorization": "Basic s3cret-basic",
        "X-Api-Key": "s3cret-proxy",
    }
    with https_client(certs, lb.port) as client:
        assert client.get("/echo?token=s3cret-query", headers=secret_headers).status_code == 200
        assert client.get("/status/500?password=s3cret-query", headers=secret_headers).status_code
    # a rejected request carrying credentials
    folded = b"GET /echo?t=s3cret-query HTTP/1.1\r\nHost: lb.test\r\n"
    folded += b"Authorization: Bearer s3cret-bearer\r\nX-Fold: a\r\n b\r\n\r\n"
    assert tls_exchange(certs, lb.port, folded).status == 400
    log_lines(log, 2)
    lb.stop()
    # an lb whose upstream is down, so it logs upstream errors too
    log2 = tmp_path / "access2.log"
    lb2 = start_lb(lb_config(certs, [dead], access_log=log2))
    with https_client(certs, lb2.port) as client:
        response = client.get("/login?password=s3cret-query", headers=secret_headers)
        assert response.status_code == 502
    log_lines(log2, 1)
    lb2.stop()
    everything = log.read_text() + log2.read_text() + lb.output() + lb2.output()
    for secret in SECRETS:
        assert secret not in everything, f"{secret} leaked into the logs"


# -- corral lb --check --------------------------------------------------------------------------

CONFIG_TEMPLATE = """\
worker_processes: 1
upstreams:
  app:
    servers: ["127.0.0.1:{upstream_port}"]
servers:
  - listen: "127.0.0.1:{listen_port}"
    server_name: lb.test
    tls:
      certificates:
        - cert: {cert}
          key: {key}
    proxy_pass: app
"""
CERT_LINE, KEY_LINE = 10, 11
PROBLEM = re.compile(
    r"lb\.yml:(?P<line>\d+): (?P<key>[\w\[\].]+): (?P<message>.+?) — fix: (?P<fix>.+)$", re.M
)


def write_config(tmp_path: Path, cert: Path | str, key: Path | str, extra: str = "") -> Path:
    path = tmp_path / "lb.yml"
    text = CONFIG_TEMPLATE.format(
        upstream_port=free_port(), listen_port=free_port(), cert=cert, key=key
    )
    path.write_text(text + extra)
    assert text.splitlines()[CERT_LINE - 1].strip().startswith("- cert:")
    return path


def run_corral_lb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        corral_argv("lb", *args), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )


def check(config: Path) -> tuple[int, str, list[re.Match[str]]]:
    """`corral lb --check --config F`: exit code, all output, parsed problem lines."""
    result = run_corral_lb("--check", "--config", str(config))
    output = result.stdout + result.stderr
    return result.returncode, output, list(PROBLEM.finditer(output))


def test_check_good_config(certs: Certs, tmp_path: Path) -> None:
    """A valid configuration: exit 0 and 'configuration ok'."""
    code, output, problems = check(write_config(tmp_path, certs.main.chain, certs.main.key))
    assert code == 0, output
    assert "configuration ok" in output
    assert not problems


def test_check_missing_certificate_file(certs: Certs, tmp_path: Path) -> None:
    """A certificate path that does not exist: exit 1, file:line, the key, the path and a fix."""
    missing = tmp_path / "nowhere" / "fullchain.pem"
    code, output, problems = check(write_config(tmp_path, missing, certs.main.key))
    assert code == 1, output
    assert len(problems) == 1, output
    (problem,) = problems
    assert int(problem["line"]) == CERT_LINE
    assert problem["key"] == "servers[0].tls.certificates[0].cert"
    assert str(missing) in problem["message"] + problem["fix"]


def test_check_key_not_matching_certificate(certs: Certs, tmp_path: Path) -> None:
    """A key that belongs to another certificate: exit 1, file:line, the key and a fix."""
    code, output, problems = check(write_config(tmp_path, certs.main.chain, certs.other.key))
    assert code == 1, output
    assert len(problems) == 1, output
    (problem,) = problems
    assert int(problem["line"]) in (CERT_LINE, KEY_LINE)
    assert problem["key"].startswith("servers[0].tls.certificates[0]")
    assert "match" in problem["message"].lower()


def test_check_chain_in_wrong_order(certs: Certs, tmp_path: Path) -> None:
    """A chain with the intermediate before the server certificate: exit 1 with the fix."""
    code, output, problems = check(write_config(tmp_path, certs.wrong_order_chain, certs.main.key))
    assert code == 1, output
    assert problems, output
    problem = problems[0]
    assert int(problem["line"]) == CERT_LINE
    assert problem["key"] == "servers[0].tls.certificates[0].cert"
    assert "order" in (problem["message"] + problem["fix"]).lower()


def test_check_unknown_key(certs: Certs, tmp_path: Path) -> None:
    """A misspelt key is rejected (not ignored): exit 1, its line, its path and a suggestion."""
    config = write_config(tmp_path, certs.main.chain, certs.main.key, "    read_timout: 5s\n")
    code, output, problems = check(config)
    assert code == 1, output
    assert len(problems) == 1, output
    (problem,) = problems
    assert int(problem["line"]) == 13
    assert problem["key"] == "servers[0].read_timout"
    assert "read_timeout" in problem["fix"]


def test_run_refuses_bad_config(certs: Certs, tmp_path: Path) -> None:
    """`corral lb --config` (no --check) with a bad config exits 1 with the same problem line."""
    config = write_config(tmp_path, certs.wrong_order_chain, certs.main.key)
    result = run_corral_lb("--config", str(config))
    assert result.returncode == 1
    assert PROBLEM.search(result.stdout + result.stderr), result.stdout + result.stderr
