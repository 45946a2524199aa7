"""`/ping`, `/healthz` (`?verbose`), `/cacerts` and `/v3/settings/cacerts` on a real server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.server.conftest import StartServer
from tests.e2e.server.core_harness import CorralServer, curl
from tests.support.net import wait_until

SECURE = {"X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_ping_and_healthz(shared_corral_server: CorralServer, scheme: str) -> None:
    """`/ping` → 200 pong and `/healthz` → 200 ok, over both listeners, GET and HEAD."""
    server = shared_corral_server
    base = server.http_url if scheme == "http" else f"https://localhost:{server.https_port}"
    tls = ["--cacert", str(server.ca_path)] if scheme == "https" else []
    ping = curl(*tls, f"{base}/ping")
    assert (ping.status, ping.body) == (200, "pong")
    assert ping.headers["content-type"].startswith("text/plain")
    healthz = curl(*tls, f"{base}/healthz")
    assert (healthz.status, healthz.body) == (200, "ok")
    head = curl(*tls, "-I", f"{base}/healthz")
    assert (head.status, head.body) == (200, "")


def test_healthz_verbose_lists_every_check(shared_corral_server: CorralServer) -> None:
    """`/healthz?verbose` names each check, Kubernetes style, and ends with the verdict."""
    got = curl(f"{shared_corral_server.http_url}/healthz?verbose")
    assert got.status == 200
    lines = got.body.splitlines()
    assert lines[0] == "[+]ping ok"
    assert re.fullmatch(r"\[\+\]store ok: backend=sqlite endpoint=sqlite:///\S+/store\.db "
                        r"revision=\d+", lines[1])
    assert lines[2] == "[+]audit-log ok: level=0 (off)"
    assert re.fullmatch(r"\[\+\]certificates ok: source=generated days_left=36[45] "
                        r"ca_fingerprint=([0-9A-F]{2}:){31}[0-9A-F]{2}", lines[3])
    assert lines[-1] == "healthz check passed"


def test_healthz_verbose_reports_audit_log_stats(start_corral_server: StartServer,
                                                 tmp_path: Path) -> None:
    """With AUDIT_LEVEL=1 the audit-log line counts the records written."""
    log_path = tmp_path / "audit" / "api.log"
    server = start_corral_server(env={"AUDIT_LEVEL": "1", "AUDIT_LOG_PATH": str(log_path)})
    for _ in range(3):
        httpx.get(f"{server.http_url}/v3/settings/cacerts", headers=SECURE)

    def audit_line() -> str:
        body = httpx.get(f"{server.http_url}/healthz?verbose").text
        line = next(li for li in body.splitlines() if li.startswith("[+]audit-log"))
        return line if "written=3 " in line else ""

    line = wait_until(audit_line, timeout=10, what="3 audit records written")
    assert line.startswith("[+]audit-log ok: level=1 ")
    assert "errors=0" in line and "dropped=0" in line
    assert len(log_path.read_text().splitlines()) == 3


def test_unwritable_audit_log_is_reported_not_fatal(start_corral_server: StartServer,
                                                    tmp_path: Path) -> None:
    """An audit log that cannot be written: requests still succeed, /healthz stays 200 and the
    verbose answer counts the errors."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    server = start_corral_server(
        env={"AUDIT_LEVEL": "1", "AUDIT_LOG_PATH": str(blocker / "api.log")}
    )
    got = httpx.get(f"{server.http_url}/v3/settings/cacerts", headers=SECURE)
    assert got.status_code == 200

    def errors_reported() -> bool:
        body = httpx.get(f"{server.http_url}/healthz?verbose").text
        return bool(re.search(r"\[\+\]audit-log ok: .*errors=[1-9].* last_error=", body))

    wait_until(errors_reported, timeout=10, what="audit errors on /healthz?verbose")
    assert httpx.get(f"{server.http_url}/healthz").text == "ok"


def test_cacerts_plain_and_setting_agree(shared_corral_server: CorralServer) -> None:
    """`GET /cacerts` is the CA as plain PEM; `/v3/settings/cacerts` (no login) holds the same."""
    server = shared_corral_server
    with server.client() as client:
        plain = client.get(f"https://localhost:{server.https_port}/cacerts")
        setting = client.get(f"https://localhost:{server.https_port}/v3/settings/cacerts")
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert plain.text == server.ca_path.read_text()
    assert setting.status_code == 200
    assert setting.json()["value"] == plain.text
