"""doctor's report (pure): the table with one fix line under each failure, the summary, JSON,
and the judge putting every check in the catalogue's order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from corral.doctor.catalogue import CHECKS, failed, passed, skipped, warned
from corral.doctor.gather import Observations
from corral.doctor.judge import judge
from corral.doctor.model import Fix, Report, Status, Target
from corral.doctor.report import render_json, render_text
from corral.doctor.tls_probe import TlsObservation

REPORT = Report("https://rancher.test", (
    passed("dns", "rancher.test → 10.0.0.5"),
    failed("websocket-idle", "closed after 60.0 s idle of 75 s"),
    warned("tls-expiry", "12 days left"),
    skipped("nodes-health", "no --nodes given"),
))


def test_text_report_has_a_fix_line_under_each_failure_only() -> None:
    """Title, heading, a row per check with its mark, `fix:` right under the failed row (none
    under the warning), then the summary."""
    lines = render_text(REPORT).splitlines()
    assert lines[0] == "corral doctor https://rancher.test"
    rows = {line.split("  ")[0]: line for line in lines[3:7]}
    assert " ✔ " in rows["DNS"] and " ! " in rows["TLS expiry"]
    idle = lines.index(next(line for line in lines if line.startswith("WebSocket idle")))
    assert " ✘ " in lines[idle]
    assert lines[idle + 1].strip() == (
        "fix: NGINX: proxy_read_timeout 900s; | corral lb: servers[].read_timeout: 900s")
    assert sum(1 for line in lines if "fix:" in line) == 1
    assert lines[-1] == "4 checks: 1 passed, 1 failed, 1 warning, 1 not run"


def test_json_report_counts_and_fixes() -> None:
    """JSON: failed (the exit status), counts per status, each check with its fix parts."""
    body = json.loads(render_json(REPORT))
    assert body["failed"] == 1 == REPORT.failed
    assert body["counts"] == {"pass": 1, "fail": 1, "warn": 1, "skip": 1}
    idle = next(item for item in body["checks"] if item["id"] == "websocket-idle")
    assert idle["fix"]["nginx"] == "proxy_read_timeout 900s;"
    assert idle["fix"]["corral_lb"] == "servers[].read_timeout: 900s"
    assert body["checks"][0]["fix"] is None


def test_fix_line_joins_what_is_given() -> None:
    """A fix shows NGINX, corral lb and other advice, whichever are set."""
    assert Fix(nginx="a;", corral_lb="b").line() == "NGINX: a; | corral lb: b"
    assert Fix(other="renew it").line() == "renew it"


def test_unresolvable_name_fails_dns_and_runs_nothing_else() -> None:
    """A name that does not resolve: DNS fails, every other check is not run (exit 1)."""
    report = judge(Target("nowhere.test"), Observations(dns_error="Name or service not known"),
                   datetime.now(UTC))
    assert [r.id for r in report.results] == [check.id for check in CHECKS]
    assert report.get("dns").status is Status.FAIL
    assert {r.status for r in report.results[1:]} == {Status.SKIP}
    assert report.failed == 1


def test_no_tls_handshake_fails_once() -> None:
    """Nothing answering TLS: one failure with the listen fix; the rest not run."""
    seen = Observations(addresses=["10.0.0.5"],
                        tls=TlsObservation(error="ConnectionRefusedError: refused"))
    report = judge(Target("rancher.test"), seen, datetime.now(UTC))
    result = report.get("tls-versions")
    assert result.status is Status.FAIL and "refused" in result.saw
    assert result.fix is not None and "listen 443 ssl http2;" in result.fix.line()
    assert report.failed == 1
