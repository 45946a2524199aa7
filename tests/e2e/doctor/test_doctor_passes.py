"""`corral doctor` against correct installs: corral lb + corral server, NGINX with the
configuration `corral lb nginx-config` renders, and NGINX with Rancher's example verbatim."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import httpx
import yaml

from tests.e2e.doctor.conftest import Fronts
from tests.e2e.doctor.harness import (
    IDLE_PASS,
    Pki,
    free_ports,
    lb_config,
    rancher_example,
    run_doctor,
)
from tests.e2e.server.core_harness import CorralServer, start_server
from tests.support.procs import corral_argv


def test_corral_lb_with_nodes_passes_every_check(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """Behind corral lb, with two servers given as --nodes: every check but the token's passes
    (WebSocket over HTTP/2 too), requests reach both nodes, and the exit status is 0."""
    front = fronts.lb(lb_config([s.http_port for s in servers], pki.good, free_ports()))
    nodes = ",".join(server.http_url for server in servers)
    published = httpx.get(f"{servers[0].http_url}/v3/settings/cacerts", timeout=10,
                          headers={"X-Forwarded-Proto": "https"}).json()["value"]
    checksum = hashlib.sha256(published.encode()).hexdigest()
    run = run_doctor(front, "--idle", IDLE_PASS, "--nodes", nodes, "--ca-checksum", checksum)
    statuses = run.statuses()
    assert run.code == 0, run.stdout
    assert {statuses.pop(name) for name in ("token-api", "token-shell")} == {"skip"}
    assert set(statuses.values()) == {"pass"}, run.stdout
    assert "got none" not in run.check("nodes-spread")["saw"]
    assert run.check("cacerts-checksum")["saw"] == (
        f"sha256 {checksum} (the same in 6 answers, = --ca-checksum)")


def test_text_report_with_a_token(fronts: Fronts, servers: list[CorralServer], pki: Pki) -> None:
    """Without --json the report is a table: a line per check with its mark (a dash for the
    checks not run) and a summary; an admin's --token adds the API and shell checks, which pass, and
    the token itself is never printed."""
    front = fronts.lb(lb_config([servers[0].http_port], pki.good, free_ports()))
    token = servers[0].login_token()
    run = run_doctor(front, "--idle", "0s", "--token", token, json_output=False)
    assert run.code == 0, run.stdout
    lines = run.stdout.splitlines()
    assert lines[0] == f"corral doctor {front.url}"
    assert any(line.startswith("WebSocket HTTP/2") and " ✔ " in line for line in lines)
    assert any(line.startswith("token: shell") and " ✔ " in line for line in lines)
    assert any(line.startswith("nodes /healthz") and " \u2013 " in line for line in lines)
    assert "fix:" not in run.stdout
    assert token.split(":")[1] not in run.stdout + run.stderr
    assert lines[-1] == "20 checks: 18 passed, 2 not run"


def test_nginx_with_the_rendered_configuration_passes(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """NGINX running what `corral lb nginx-config` prints for a corral lb file passes every
    check NGINX can (WebSocket over HTTP/2 is not offered: not run), exit status 0."""
    ports = free_ports()
    lb_file = fronts.directory / "for-nginx.yml"
    lb_file.write_text(yaml.safe_dump(lb_config([servers[0].http_port, servers[1].http_port],
                                                pki.good, ports)))
    rendered = subprocess.run(corral_argv("lb", "nginx-config", "--config", str(lb_file)),
                              capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    front = fronts.nginx(rendered.stdout, ports)
    nodes = ",".join(server.http_url for server in servers)
    run = run_doctor(front, "--idle", IDLE_PASS, "--nodes", nodes)
    statuses = run.statuses()
    assert run.code == 0, run.stdout
    assert statuses.pop("websocket-h2") == "skip"
    assert {statuses.pop(name) for name in ("token-api", "token-shell")} == {"skip"}
    assert set(statuses.values()) == {"pass"}, run.stdout


def test_nginx_with_rancher_example_verbatim_passes(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """NGINX with Rancher's example NGINX configuration (only addresses, names and paths
    substituted) passes: no check fails."""
    ports = free_ports()
    front = fronts.nginx(rancher_example(servers[0].http_port, pki.good, ports), ports)
    run = run_doctor(front, "--idle", IDLE_PASS)
    assert run.code == 0, run.stdout
    assert run.failed() == []
    assert run.check("websocket-idle")["status"] == "pass"
    assert run.check("streaming")["status"] == "pass"
    # the example redirects to https://FQDN (port 443): noted, not a failure
    assert "port 443" in run.check("http-redirect")["saw"]


def test_recognised_ca_install_verified_with_the_given_ca(
    fronts: Fronts, pki: Pki, tmp_path: Path
) -> None:
    """A server started with --no-cacerts publishes nothing; doctor --no-cacerts checks that
    and verifies the chain against --ca instead (the trust store of a recognised CA)."""
    server = start_server(tmp_path / "no-cacerts", "--no-cacerts")
    try:
        ports = free_ports()
        front = fronts.nginx(rancher_example(server.http_port, pki.good, ports), ports)
        run = run_doctor(front, "--idle", "0s", "--no-cacerts", "--ca", str(pki.ca_pem))
    finally:
        server.stop()
    assert run.code == 0, run.stdout
    assert run.check("cacerts")["saw"] == (
        f"none published (--no-cacerts): the chain verifies against --ca {pki.ca_pem}")
    assert run.check("cacerts-checksum")["status"] == "skip"
    assert f"(--ca {pki.ca_pem})" in run.check("tls-chain")["saw"]
