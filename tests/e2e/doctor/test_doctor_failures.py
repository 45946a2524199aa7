"""`corral doctor` against NGINX running Rancher's example configuration with one mistake each:
exactly that check fails (exit status 1) and its fix line names the NGINX directive and the
corral lb key that mend it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.doctor.conftest import Fronts
from tests.e2e.doctor.harness import (
    CertPair,
    DoctorRun,
    Front,
    Pki,
    change,
    drop_line,
    free_ports,
    rancher_example,
    run_doctor,
)
from tests.e2e.server.core_harness import CorralServer, start_server

NO_IDLE = "0s"  # the idle period is not what these tests are about


def _nginx(fronts: Fronts, server: CorralServer, cert: CertPair,
           edit: Callable[[str], str] | None = None) -> Front:
    """NGINX with Rancher's example in front of `server`, serving `cert`, edited by `edit`."""
    ports = free_ports()
    text = rancher_example(server.http_port, cert, ports)
    return fronts.nginx(edit(text) if edit else text, ports)


def _only_failure(run: DoctorRun, check_id: str) -> dict[str, object]:
    assert run.failed() == [check_id], run.stdout
    assert run.code == 1
    result = run.check(check_id)
    assert result["fix"] is not None
    return result


def _fix(result: dict[str, object]) -> str:
    fix = result["fix"]
    assert isinstance(fix, dict)
    return str(fix["line"])


def test_upgrade_and_connection_lines_removed(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """Without `proxy_set_header Upgrade`/`Connection` the WebSocket is not upgraded: the
    WebSocket check fails naming both directives."""
    front = _nginx(fronts, servers[0], pki.good, lambda text: drop_line(
        text, r"proxy_set_header (Upgrade|Connection) "))
    run = run_doctor(front, "--idle", NO_IDLE)
    result = _only_failure(run, "websocket")
    assert "instead of 101" in str(result["saw"])
    assert "proxy_set_header Upgrade $http_upgrade;" in _fix(result)
    assert "proxy_set_header Connection $connection_upgrade;" in _fix(result)
    assert "corral lb: passes Upgrade" in _fix(result)
    assert run.check("websocket-idle")["status"] == "skip"


def test_short_read_timeout_cuts_the_idle_websocket(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """`proxy_read_timeout 1s` with --idle 3s: the idle WebSocket is closed by NGINX; the text
    report marks it ✘ with the fix line right under it."""
    front = _nginx(fronts, servers[0], pki.good, lambda text: change(
        text, "proxy_read_timeout 900s;", "proxy_read_timeout 1s;"))
    run = run_doctor(front, "--idle", "3s", json_output=False)
    assert run.code == 1, run.stdout
    lines = run.stdout.splitlines()
    (row,) = [i for i, line in enumerate(lines) if line.startswith("WebSocket idle")]
    assert " ✘ " in lines[row] and "closed after" in lines[row]
    fix = lines[row + 1].strip()
    assert fix.startswith("fix: NGINX: proxy_read_timeout 900s;")
    assert "corral lb: servers[].read_timeout: 900s" in fix
    assert sum(1 for line in lines if line.strip().startswith("fix:")) == 1
    assert lines[-1].startswith("20 checks:") and "1 failed" in lines[-1]


def test_proxy_buffering_on_holds_the_stream_back(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """`proxy_buffering on`: the slow stream's chunks arrive together at the end; the
    buffering check fails naming `proxy_buffering off;`."""
    front = _nginx(fronts, servers[0], pki.good, lambda text: change(
        text, "proxy_buffering off;", "proxy_buffering on;"))
    run = run_doctor(front, "--idle", NO_IDLE)
    result = _only_failure(run, "streaming")
    assert "held back" in str(result["saw"])
    assert "NGINX: proxy_buffering off;" in _fix(result)


def test_lost_forwarded_proto_is_a_redirect_loop(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """Without `X-Forwarded-Proto` the server answers an HTTPS request as if it were plain
    HTTP: the redirect-loop check fails (the checks it hides are not run, not failed)."""
    front = _nginx(fronts, servers[0], pki.good, lambda text: drop_line(
        text, r"X-Forwarded-Proto"))
    run = run_doctor(front, "--idle", NO_IDLE)
    result = _only_failure(run, "redirect-loop")
    assert "saw plain HTTP" in str(result["saw"])
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in _fix(result)
    assert run.check("forwarded")["status"] == "skip"


def test_chain_served_in_the_wrong_order(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """Server certificate first but its intermediates swapped: the chain check fails, saying
    which certificate is out of place; the CA still verifies it (no other failure)."""
    front = _nginx(fronts, servers[0], pki.misordered)
    run = run_doctor(front, "--idle", NO_IDLE)
    result = _only_failure(run, "tls-chain")
    assert "certificate 2" in str(result["saw"])
    assert "server certificate first, then the intermediates" in _fix(result)
    assert "servers[].tls.certificates[].cert" in _fix(result)
    assert run.check("cacerts")["status"] == "pass"


def test_certificate_for_another_name(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """A certificate for other.test served for localhost: the names check fails."""
    front = _nginx(fronts, servers[0], pki.other_name)
    run = run_doctor(front, "--idle", NO_IDLE)
    result = _only_failure(run, "tls-names")
    assert "other.test, not localhost" in str(result["saw"])
    assert "ssl_certificate" in _fix(result) and "tls.certificates[].cert" in _fix(result)


def test_cacerts_that_did_not_sign_the_served_chain(
    fronts: Fronts, pki: Pki, tmp_path: Path
) -> None:
    """A server publishing its own generated CA behind NGINX serving a chain from another CA:
    the cacerts check fails (what agents pinning cacerts would hit)."""
    server = start_server(tmp_path / "generated-ca")
    try:
        front = _nginx(fronts, server, pki.good)
        run = run_doctor(front, "--idle", NO_IDLE)
    finally:
        server.stop()
    result = _only_failure(run, "cacerts")
    assert "does not verify against the published CN=corral-ca@" in str(result["saw"])
    assert "issued by the CA the server publishes" in _fix(result)
    assert run.check("tls-chain")["status"] == "skip"


def test_port_80_not_redirecting(
    fronts: Fronts, servers: list[CorralServer], pki: Pki
) -> None:
    """Port 80 proxied to the server instead of answering 301: the redirect check fails
    naming the `return 301` server block and the corral lb redirect key."""
    front = _nginx(fronts, servers[0], pki.good, lambda text: change(
        text, "return 301 https://$server_name$request_uri;",
        "location / { proxy_pass http://rancher; }"))
    run = run_doctor(front, "--idle", NO_IDLE)
    result = _only_failure(run, "http-redirect")
    assert "301 or 308 expected" in str(result["saw"])
    assert "return 301 https://$server_name$request_uri;" in _fix(result)
    assert "redirect:" in _fix(result)
