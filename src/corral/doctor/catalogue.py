"""Every check doctor runs, in report order: its id, title and the fix for its failure.

A fix names the NGINX directive (as in Rancher's example NGINX configuration) and the
`corral lb` key (docs/lb.md) that mend it; what no load-balancer setting mends says what does.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.doctor.model import CheckResult, Fix, Status


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report."""

    id: str
    title: str
    fix: Fix


_CHAIN_FILE = "the server certificate first, then the intermediates, without the root"

CHECKS: tuple[Check, ...] = (
    Check("dns", "DNS", Fix(other=(
        "DNS, not the load balancer: give the FQDN an A/AAAA record pointing at the load "
        "balancer (Rancher's guides: check it with nslookup FQDN)"
    ))),
    Check("tls-versions", "TLS versions", Fix(
        nginx="ssl_protocols TLSv1.2 TLSv1.3;",
        corral_lb="servers[].tls.protocols: [TLSv1.2, TLSv1.3]",
    )),
    Check("tls-chain", "TLS chain", Fix(
        nginx=f"ssl_certificate FILE; with {_CHAIN_FILE}",
        corral_lb=f"servers[].tls.certificates[].cert with {_CHAIN_FILE} (corral lb --check "
        "shows the order)",
    )),
    Check("tls-names", "TLS names", Fix(
        nginx="ssl_certificate with a certificate whose names (SAN) include the FQDN",
        corral_lb="servers[].tls.certificates[].cert: a certificate for the FQDN",
    )),
    Check("tls-expiry", "TLS expiry", Fix(
        nginx="ssl_certificate: the renewed certificate (then nginx -s reload)",
        corral_lb="servers[].tls.certificates[].cert: the renewed certificate (then corral lb "
        "reload)",
    )),
    Check("cacerts", "cacerts signs chain", Fix(
        nginx="ssl_certificate: a chain issued by the CA the server publishes",
        corral_lb="servers[].tls.certificates[].cert: a chain issued by that CA",
        other="or publish the CA that issued it: corral server's cacerts.pem (the Secret "
        "cattle-keys-server in Rancher's HA guide)",
    )),
    Check("cacerts-checksum", "cacerts checksum", Fix(other=(
        "every server must publish the same cacerts (HA servers share one CA through the "
        "same --etcd-* flags); register agents with the --ca-checksum shown here"
    ))),
    Check("http2", "HTTP/2", Fix(
        nginx="listen 443 ssl http2;",
        corral_lb="servers[].tls.alpn: [h2, http/1.1] (the default)",
    )),
    Check("http1", "HTTP/1.1", Fix(
        nginx="listen 443 ssl http2; and location / { proxy_pass http://rancher; }",
        corral_lb="servers[].tls.alpn: [h2, http/1.1] and servers[].proxy_pass",
    )),
    Check("http-redirect", "port 80 redirect", Fix(
        nginx="server { listen 80; server_name FQDN; return 301 https://$server_name"
        "$request_uri; }",
        corral_lb="servers[]: {listen: 80, server_name: FQDN, redirect: "
        "\"https://$server_name$request_uri\"}",
    )),
    Check("redirect-loop", "no redirect loop", Fix(
        nginx="proxy_set_header X-Forwarded-Proto $scheme;",
        corral_lb="sets it on every request (behind another proxy: trusted_proxies lists it)",
    )),
    Check("forwarded", "forwarded headers", Fix(
        nginx="proxy_set_header Host $host; X-Forwarded-Proto $scheme; X-Forwarded-Port "
        "$server_port; X-Forwarded-For $proxy_add_x_forwarded_for;",
        corral_lb="sets them on every request (behind another proxy: trusted_proxies)",
    )),
    Check("websocket", "WebSocket HTTP/1.1", Fix(
        nginx="proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
        "proxy_set_header Connection $connection_upgrade; (with the map $http_upgrade)",
        corral_lb="passes Upgrade on every servers[].proxy_pass (nothing to set)",
    )),
    Check("websocket-h2", "WebSocket HTTP/2", Fix(
        nginx="NGINX has no WebSocket over HTTP/2; clients fall back to HTTP/1.1",
        corral_lb="servers[].tls.alpn with h2 (RFC 8441 is on with HTTP/2)",
    )),
    Check("websocket-idle", "WebSocket idle", Fix(
        nginx="proxy_read_timeout 900s;",
        corral_lb="servers[].read_timeout: 900s",
    )),
    Check("streaming", "no buffering", Fix(
        nginx="proxy_buffering off;",
        corral_lb="never buffers (nothing to set)",
    )),
    Check("nodes-health", "nodes /healthz", Fix(other=(
        "the node, not the load balancer: see curl http://NODE/healthz?verbose for the "
        "failing check"
    ))),
    Check("nodes-spread", "nodes spreading", Fix(
        nginx="upstream rancher { server NODE:80; … } listing every node",
        corral_lb="upstreams.<name>.servers listing every node (with health_check)",
    )),
    Check("token-api", "token: API", Fix(
        nginx="pass Authorization (no proxy_set_header Authorization)",
        corral_lb="passes Authorization (nothing to set)",
        other="or the token is wrong or expired: log in again",
    )),
    Check("token-shell", "token: shell", Fix(
        nginx="proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "
        "$connection_upgrade;",
        corral_lb="passes Upgrade (nothing to set)",
        other="the shell needs an admin's token",
    )),
)

BY_ID: dict[str, Check] = {check.id: check for check in CHECKS}


def result(check_id: str, status: Status, saw: str, fix: Fix | None = None) -> CheckResult:
    """A result of check `check_id`; a failure gets the catalogue's fix unless one is given."""
    check = BY_ID[check_id]
    if fix is None and status is Status.FAIL:
        fix = check.fix
    return CheckResult(check.id, check.title, status, saw, fix)


def passed(check_id: str, saw: str) -> CheckResult:
    """A passed check."""
    return result(check_id, Status.PASS, saw)


def failed(check_id: str, saw: str, fix: Fix | None = None) -> CheckResult:
    """A failed check with its fix."""
    return result(check_id, Status.FAIL, saw, fix)


def warned(check_id: str, saw: str) -> CheckResult:
    """A check that works but needs attention."""
    return result(check_id, Status.WARN, saw)


def skipped(check_id: str, saw: str) -> CheckResult:
    """A check not run (or with nothing to check)."""
    return result(check_id, Status.SKIP, saw)
