"""From what doctor saw to the report: every check's verdict, in the catalogue's order. Pure."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from corral.doctor import http_logic, nodes_logic, tls_logic, ws_logic
from corral.doctor.catalogue import CHECKS, failed, skipped
from corral.doctor.dns import dns_result
from corral.doctor.gather import Observations
from corral.doctor.model import CheckResult, Fix, Report, Status, Target
from corral.doctor.tls_logic import Anchor, CacertsFacts
from corral.pki import PkiError, parse_certificates
from corral.server.diagnostics import STREAM_CHUNKS, STREAM_INTERVAL_S

_NO_TLS_FIX = Fix(
    nginx="listen 443 ssl http2; with ssl_certificate and ssl_certificate_key",
    corral_lb="servers[]: {listen: 443, tls: {certificates: [{cert: …, key: …}]}}",
)


def _certificates(pem: str, source: str) -> list[x509.Certificate]:
    try:
        return parse_certificates(pem, source)
    except PkiError:
        return []


def _anchors(target: Target, published: list[x509.Certificate], ca_pem: str) -> list[Anchor]:
    anchors = [Anchor(cert, "cacerts") for cert in published]
    if target.ca_file is not None and ca_pem:
        anchors += [Anchor(cert, f"--ca {target.ca_file}")
                    for cert in _certificates(ca_pem, str(target.ca_file))]
    return anchors


def _tls(target: Target, seen: Observations, now: datetime) -> list[CheckResult]:
    assert seen.tls is not None
    trust = seen.trust
    chain = [x509.load_der_x509_certificate(der) for der in seen.tls.chain]
    published = _certificates(trust.value, "cacerts") if trust.value else []
    fallback_error = trust.ca_error if target.ca_file is not None else trust.system_error
    facts = CacertsFacts(
        value=trust.value, read_error=trust.read_error, cacerts_error=trust.cacerts_error,
        fallback_error=fallback_error,
        fallback_source=f"--ca {target.ca_file}" if target.ca_file else "the system trust store",
        no_cacerts=target.no_cacerts,
    )
    results = [
        tls_logic.versions_result(seen.tls.versions),
        tls_logic.chain_result(
            chain, _anchors(target, published, trust.ca_pem), system_error=trust.system_error,
            private_ca_expected=trust.value is None or bool(trust.value.strip()),
            explicit_ca=target.ca_file is not None,
        ),
    ]
    if chain:
        results += [tls_logic.names_result(chain[0], target.fqdn),
                    tls_logic.expiry_result(chain, now)]
    else:
        results += [skipped("tls-names", "no certificate"), skipped("tls-expiry", "none")]
    results += [tls_logic.cacerts_result(facts, published),
                tls_logic.checksum_result(trust.seen, target.ca_checksum)]
    return results


def _http(target: Target, seen: Observations) -> list[CheckResult]:
    assert seen.tls is not None
    echo = seen.echo
    return [
        http_logic.protocol_result("http2", "HTTP/2", seen.h2, seen.tls.alpn),
        http_logic.protocol_result("http1", "HTTP/1.1", seen.h1, seen.tls.alpn),
        http_logic.redirect_result(seen.redirects, target),
        http_logic.loop_result(echo.answer),
        http_logic.forwarded_result(echo.headers, echo.answer, target, echo.client),
    ]


def _websockets(target: Target, seen: Observations, looped: bool) -> list[CheckResult]:
    diagnostics = seen.echo.headers is not None
    results = [ws_logic.upgrade_result(outcome, diagnostics=diagnostics, looped=looped)
               for outcome in seen.websockets]
    return [*results, ws_logic.idle_result(seen.websockets, target.idle_s)]


def _token(seen: Observations) -> list[CheckResult]:
    token = seen.token
    if token.not_sent or token.api is None or token.shell is None:
        why = token.not_sent or "not run"
        return [skipped("token-api", why), skipped("token-shell", why)]
    return [http_logic.token_api_result(token.api), ws_logic.token_shell_result(token.shell)]


def judge(target: Target, seen: Observations, now: datetime) -> Report:
    """The report for `target` from `seen` (`now` for certificate dates)."""
    results = [dns_result(target, seen.addresses, seen.dns_error)]
    if seen.dns_error:
        return _complete(target, results, "not run: the FQDN does not resolve")
    assert seen.tls is not None
    if seen.tls.error:
        results.append(failed("tls-versions", f"no TLS handshake with {target.authority}: "
                                              f"{seen.tls.error}", _NO_TLS_FIX))
        return _complete(target, results, "not run: no TLS connection")
    results += _tls(target, seen, now)
    http = _http(target, seen)
    looped = any(r.id == "redirect-loop" and r.status is Status.FAIL for r in http)
    results += http
    results += _websockets(target, seen, looped)
    results.append(http_logic.stream_result(seen.streams, STREAM_CHUNKS, STREAM_INTERVAL_S))
    results += [nodes_logic.health_result(seen.nodes),
                nodes_logic.spread_result(seen.nodes, seen.lb_servers)]
    results += _token(seen)
    return _complete(target, results, "not run")


def _complete(target: Target, results: list[CheckResult], why: str) -> Report:
    """Every catalogue check once, in order; those without a result are skipped with `why`."""
    by_id = {result.id: result for result in results}
    ordered = [by_id.get(check.id) or skipped(check.id, why) for check in CHECKS]
    return Report(target.url, tuple(ordered))
