"""The report as text (a table, one `fix:` line under each failure) or JSON; pure."""

from __future__ import annotations

import json
from typing import Any

from corral.doctor.model import CheckResult, Report, Status

MARKS = {Status.PASS: "\u2714", Status.FAIL: "\u2718", Status.WARN: "!", Status.SKIP: "\u2013"}
_WORDS = {Status.PASS: "passed", Status.FAIL: "failed", Status.WARN: "warning",
          Status.SKIP: "not run"}
_HEADINGS = ("check", "", "what it saw")


def render_text(report: Report) -> str:
    """The table: check, mark, what it saw; `fix:` under each failure; a summary line."""
    width = max([len(_HEADINGS[0]), *(len(r.title) for r in report.results)])
    lines = [f"corral doctor {report.url}", "", f"{_HEADINGS[0]:<{width}}     {_HEADINGS[2]}"]
    for result in report.results:
        lines.append(f"{result.title:<{width}}  {MARKS[result.status]}  {result.saw}")
        if result.status is Status.FAIL and result.fix is not None:
            lines.append(f"{'':<{width}}     fix: {result.fix.line()}")
    lines += ["", summary(report)]
    return "\n".join(lines) + "\n"


def summary(report: Report) -> str:
    """`20 checks: 16 passed, 1 failed, 1 warning, 2 not run`."""
    counts = report.counts()
    parts = [f"{counts[status]} {_WORDS[status]}" for status in Status if counts[status]]
    return f"{len(report.results)} checks: " + ", ".join(parts)


def _result_json(result: CheckResult) -> dict[str, Any]:
    fix = None
    if result.fix is not None:
        fix = {"nginx": result.fix.nginx, "corral_lb": result.fix.corral_lb,
               "other": result.fix.other, "line": result.fix.line()}
    return {"id": result.id, "title": result.title, "status": str(result.status),
            "saw": result.saw, "fix": fix}


def render_json(report: Report) -> str:
    """The report for scripts: url, failed (= the exit status), counts, checks[]."""
    counts = report.counts()
    body = {
        "url": report.url,
        "failed": report.failed,
        "counts": {str(status): counts[status] for status in Status},
        "checks": [_result_json(result) for result in report.results],
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
