"""testssl.sh against `corral lb` (one run for the module): TLS 1.2 and 1.3 only, no weak
cipher, forward secrecy with X25519, P-256 and P-384, ALPN h2 and http/1.1, and the HSTS and
header changes seen from outside."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.lb_tls.stack import BANNER_PATH, OptionsLb

TESTSSL_TIMEOUT_S = 240
WEAK_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
WEAK_CIPHER_LISTS = (
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",  # obsolete CBC suites
)
Findings = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def findings(options_lb: OptionsLb, tmp_path_factory: pytest.TempPathFactory) -> Findings:
    """testssl.sh's JSON findings by id: protocols, cipher categories, forward secrecy and the
    HTTP headers of the HSTS server, without DNS lookups."""
    testssl = shutil.which("testssl")
    assert testssl is not None, "testssl is not installed: run scripts/setup (Debian testssl.sh)"
    report = tmp_path_factory.mktemp("testssl") / "report.json"
    url = f"https://127.0.0.1:{options_lb.ports.main}{BANNER_PATH}"
    argv = [testssl, "--protocols", "--std", "--fs", "--headers", "--quiet", "--color", "0"]
    argv += ["--warnings", "off", "--nodns", "none", "--jsonfile", str(report), url]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TESTSSL_TIMEOUT_S, check=False
    )
    assert report.exists(), f"testssl wrote no report (exit {done.returncode}):\n{done.stdout}"
    entries = json.loads(Path(report).read_text())
    return {entry["id"]: entry for entry in entries}


def finding(findings: Findings, key: str) -> str:
    """The text testssl.sh found for one check id."""
    assert key in findings, f"testssl reported no {key}: {sorted(findings)}"
    return findings[key]["finding"]


def test_only_tls_1_2_and_1_3_offered(findings: Findings) -> None:
    """SSLv2, SSLv3, TLS 1.0 and 1.1 are not offered; TLS 1.2 and 1.3 are."""
    for protocol in WEAK_PROTOCOLS:
        assert finding(findings, protocol) == "not offered", protocol
    assert finding(findings, "TLS1_2") == "offered"
    assert finding(findings, "TLS1_3").startswith("offered")


def test_no_weak_cipher_offered(findings: Findings) -> None:
    """No NULL, anonymous, export, LOW, 3DES/IDEA or CBC suite; strong AEAD suites are."""
    for category in WEAK_CIPHER_LISTS:
        assert finding(findings, category) == "not offered", category
    assert finding(findings, "cipherlist_STRONG") == "offered"


def test_forward_secrecy_with_the_default_groups(findings: Findings) -> None:
    """Forward secrecy everywhere, over exactly X25519, prime256v1 (P-256) and secp384r1."""
    assert finding(findings, "PFS") == "offered"
    assert set(finding(findings, "PFS_ECDHE_curves").split()) == {
        "X25519",
        "prime256v1",
        "secp384r1",
    }


def test_alpn_h2_and_http_1_1(findings: Findings) -> None:
    """ALPN offers h2 and http/1.1."""
    assert finding(findings, "ALPN_HTTP2") == "h2"
    assert finding(findings, "ALPN") == "http/1.1"


def test_hsts_and_headers_seen_from_outside(findings: Findings) -> None:
    """testssl.sh sees one year of HSTS with includeSubDomains, no Server banner (the
    upstream's is hidden) and the added X-Frame-Options."""
    assert findings["HSTS_time"]["severity"] == "OK"
    assert finding(findings, "HSTS_time").startswith("365 days (=31536000 seconds)")
    assert finding(findings, "HSTS_subdomains") == "includes subdomains"
    assert finding(findings, "banner_server").startswith("No Server banner")
    assert finding(findings, "X-Frame-Options") == "DENY"


def test_nothing_rated_medium_or_worse(findings: Findings) -> None:
    """No finding of these checks is rated MEDIUM, HIGH or CRITICAL."""
    bad = {
        k: v["finding"]
        for k, v in findings.items()
        if v["severity"] in {"MEDIUM", "HIGH", "CRITICAL"}
    }
    assert bad == {}
