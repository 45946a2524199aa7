"""Pure parts behind the web UI: the CSRF rule, the WebSocket Origin rule, the audit view's
filters and reading, the rendering of HA node records and the CA facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme

from corral.server.api.csrf import csrf_problem, looks_like_browser, new_csrf_cookie
from corral.server.api.envelope import Links
from corral.server.api.nodes import record_node
from corral.server.api.ws import origin_allowed
from corral.server.domain.nodes import NodeRecord, ServiceHealth
from corral.server.ui.api import ca_facts
from corral.server.ui.audit_view import AuditFilter, matches, parse_filter, recent_records

BROWSER = (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/156")
SESSION = (b"cookie", b"R_SESS=token-abc:secret; CSRF=t0k3n")


@pytest.mark.parametrize(("method", "headers", "refused"), [
    ("GET", [BROWSER, SESSION], False),  # reads are never checked
    ("POST", [BROWSER, SESSION, (b"x-api-csrf", b"t0k3n")], False),  # the echo matches
    ("POST", [BROWSER, SESSION], True),  # no header
    ("DELETE", [BROWSER, SESSION, (b"x-api-csrf", b"other")], True),  # wrong header
    ("PUT", [BROWSER, (b"cookie", b"R_SESS=token-abc:secret"), (b"x-api-csrf", b"x")], True),
    ("POST", [BROWSER, SESSION, (b"authorization", b"Bearer token-abc:secret")], False),
    ("POST", [BROWSER, (b"cookie", b"CSRF=t0k3n")], False),  # no session cookie: no login
    ("POST", [(b"user-agent", b"python-httpx/0.28"), SESSION], False),  # not a browser
    ("POST", [(b"origin", b"https://evil.example"), SESSION], True),  # Origin: a browser
    ("PATCH", [(b"sec-fetch-site", b"cross-site"), SESSION], True),
])
def test_csrf_rule(method: str, headers: list[tuple[bytes, bytes]], refused: bool) -> None:
    """Only cookie-authenticated browser writes need X-API-CSRF equal to the CSRF cookie."""
    assert (csrf_problem(method, headers) is not None) is refused


def test_csrf_messages_name_the_cookie_and_the_header() -> None:
    """A refusal says what is missing and how to fix it."""
    no_cookie = csrf_problem("POST", [BROWSER, (b"cookie", b"R_SESS=token-a:s")])
    assert no_cookie is not None and "CSRF cookie" in no_cookie
    no_header = csrf_problem("POST", [BROWSER, SESSION])
    assert no_header is not None and "X-API-CSRF" in no_header


def test_new_csrf_cookie_is_random_secure_strict_and_readable() -> None:
    """A fresh token each time; Secure and SameSite=Strict; not HttpOnly (the page echoes it)."""
    first, second = new_csrf_cookie(), new_csrf_cookie()
    assert first != second and first.startswith("CSRF=")
    attributes = {part.strip() for part in first.split(";")[1:]}
    assert attributes == {"Path=/", "Secure", "SameSite=Strict"}
    assert not looks_like_browser([(b"user-agent", b"curl/8.5.0")])


@pytest.mark.parametrize(("origin", "allowed"), [
    (None, True),  # not a browser
    ("https://corral.test:8443", True),
    ("https://CORRAL.test:8443", True),
    ("https://corral.test", False),  # another port
    ("http://corral.test:8443", False),  # another scheme
    ("https://evil.example", False),
    ("null", False),
    ("https://corral.test:99999", False),  # unparsable port
])
def test_websocket_origin_rule(origin: str | None, allowed: bool) -> None:
    """A browser's Origin must be the very origin (scheme, host, port) the request came to."""
    assert origin_allowed(origin, "https://corral.test:8443") is allowed


def test_default_ports_are_the_same_origin() -> None:
    """`https://host` and `https://host:443` are one origin."""
    assert origin_allowed("https://corral.test", "https://corral.test:443")
    assert origin_allowed("http://corral.test:80", "http://corral.test")


@pytest.mark.parametrize(("query", "problem"), [
    ({"method": "FETCH"}, "not an HTTP method"),
    ({"status": "4x"}, "404"),
    ({"status": "abc"}, "4xx"),
    ({"limit": "0"}, "from 1 to 1000"),
    ({"limit": "lots"}, "whole number"),
])
def test_audit_filter_refuses_bad_parameters(query: dict[str, str], problem: str) -> None:
    """Bad filter values get a message naming the parameter and what to give."""
    result = parse_filter(query)
    assert isinstance(result, str) and problem in result


def test_audit_filter_matches_user_method_and_status_class() -> None:
    """User is a case-blind substring, method exact, status a code or a class."""
    record = {"user": {"name": "Alice"}, "method": "POST", "responseCode": 422}
    assert matches(record, AuditFilter(user="ali", method="POST", status="4xx"))
    assert matches(record, AuditFilter(status="422"))
    assert not matches(record, AuditFilter(status="5xx"))
    assert not matches(record, AuditFilter(method="GET"))
    assert not matches(record, AuditFilter(user="bob"))


def test_recent_records_newest_first_filtered_and_cut(tmp_path: Path) -> None:
    """The newest matching records first, at most `limit`; a cut line is skipped; a long body
    is shortened for the page; a missing file is no records."""
    log = tmp_path / "audit.log"
    lines = [json.dumps({"auditID": str(i), "method": "GET" if i % 2 else "POST",
                         "user": {"name": "admin"}, "responseCode": 200,
                         "requestBody": "x" * (10_000 if i == 4 else 10)})
             for i in range(6)]
    log.write_text("\n".join(lines) + '\n{"auditID": "cut-sho')
    found = recent_records(log, AuditFilter(method="POST", limit=2))
    assert [r["auditID"] for r in found] == ["4", "2"]
    assert found[0]["requestBodyPreview"] is True and len(found[0]["requestBody"]) < 5000
    assert recent_records(tmp_path / "missing.log", AuditFilter()) == []


def test_ha_node_records_render_with_heartbeat_and_service_checks() -> None:
    """A node record becomes a v3 node: active while fresh and healthy, unavailable when a
    service fails or the heartbeat is older than the grace period."""
    record = NodeRecord(
        name="node-a", roles=("controlplane", "etcd"), address="192.0.2.1",
        internal_address="10.0.0.1", version="0.1.0", heartbeat_at_ms=1_000_000,
        created_at_ms=900_000, hostname="a.example.com",
        services={"server": ServiceHealth(True, ""), "etcd": ServiceHealth(True, "ok")},
    )
    links = Links("https://corral.test")
    node = record_node(record, links, now=1_005_000)
    assert node["id"] == "node-a" and node["state"] == "active"
    assert node["addresses"] == ["192.0.2.1", "10.0.0.1"]
    assert [c["name"] for c in node["health"]["checks"]] == ["heartbeat", "etcd", "server"]
    assert node["links"]["self"] == "https://corral.test/v3/nodes/node-a"
    stale = record_node(record, links, now=1_000_000 + 41_000)
    assert stale["state"] == "unavailable" and not stale["health"]["checks"][0]["ok"]
    failing = NodeRecord(
        name="node-b", roles=(), address="192.0.2.2", internal_address="192.0.2.2",
        version="0.1.0", heartbeat_at_ms=1_000_000, created_at_ms=1,
        services={"server": ServiceHealth(False, "connection refused")},
    )
    rendered = record_node(failing, links, now=1_001_000)
    assert rendered["state"] == "unavailable" and rendered["addresses"] == ["192.0.2.2"]
    assert rendered["conditions"][0]["message"] == "connection refused"


def test_ca_facts_fingerprint_and_agent_checksum() -> None:
    """The fingerprint is the certificate's SHA-256 (`AB:CD:…`); the checksum is the sha256 of
    the PEM text (what `--ca-checksum` pins); no CA gives empty strings."""
    pem = trustme.CA().cert_pem.bytes().decode()
    facts = ca_facts(pem)
    assert len(facts["fingerprint"].split(":")) == 32
    assert len(facts["checksum"]) == 64 and facts["checksum"] != facts["fingerprint"]
    assert ca_facts("") == {"fingerprint": "", "checksum": ""}
