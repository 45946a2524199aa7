"""What the TLS observations mean: versions, chain, names, expiry, cacerts and its checksum.
Pure: certificates and facts in, check results out."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from corral.doctor.catalogue import failed, passed, skipped, warned
from corral.doctor.model import CheckResult, Fix
from corral.doctor.tls_probe import (
    ACCEPTED,
    CURRENT_VERSIONS,
    OLD_VERSIONS,
    UNTESTABLE,
    VersionProbe,
)
from corral.pki import PkiError, check_chain_order, describe, issued_by, matches_hostname
from corral.pki.names import subject_names

EXPIRY_WARNING_DAYS = 30
_SECONDS_PER_DAY = 86400


def versions_result(probes: Sequence[VersionProbe]) -> CheckResult:
    """TLS 1.2 or newer only: TLSv1/TLSv1.1 must be refused, 1.2 or 1.3 accepted."""
    accepted = [p.version for p in probes if p.outcome == ACCEPTED]
    refused = [p.version for p in probes if p.outcome not in (ACCEPTED, UNTESTABLE)]
    untested = [p.version for p in probes if p.outcome == UNTESTABLE]
    parts = []
    if accepted:
        parts.append(f"{', '.join(accepted)} accepted")
    if refused:
        parts.append(f"{', '.join(refused)} refused")
    if untested:
        parts.append(f"{', '.join(untested)} not tested (this machine's OpenSSL cannot offer it)")
    saw = "; ".join(parts)
    old = [version for version in accepted if version in OLD_VERSIONS]
    if old:
        return failed("tls-versions", f"{saw}: {', '.join(old)} must be refused")
    if not any(version in CURRENT_VERSIONS for version in accepted):
        return failed("tls-versions", f"{saw}: neither TLSv1.2 nor TLSv1.3 works")
    return passed("tls-versions", saw)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A CA doctor knows, and where it comes from (`cacerts`, `--ca FILE`)."""

    cert: x509.Certificate
    source: str


def _path(chain: Sequence[x509.Certificate]) -> str:
    return " ← ".join(describe(cert) for cert in chain)


def chain_result(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[Anchor],
    *,
    system_error: str | None,
    private_ca_expected: bool,
    explicit_ca: bool,
) -> CheckResult:
    """Complete, server certificate first, each issued by the next, without the root.

    `system_error` is why the chain does not verify against the system's trust store (None when
    it does); `private_ca_expected` is true when the server publishes a cacerts (a private CA:
    the cacerts check judges the issuer) or it could not be read; `explicit_ca` when an anchor
    came from --ca.
    """
    if not chain:
        return failed("tls-chain", "no certificate was served")
    try:
        check_chain_order(list(chain), "the served chain")
    except PkiError as exc:
        return failed("tls-chain", exc.problem)
    top = chain[-1]
    if issued_by(top, top):
        return warned(
            "tls-chain",
            f"{_path(chain)}: the root {describe(top)} is served too (clients must already "
            "have it; leave it out)",
        )
    for anchor in anchors:
        if issued_by(top, anchor.cert):
            return passed("tls-chain", f"{_path(chain)}, issued by {describe(anchor.cert)} "
                                       f"({anchor.source})")
    issuer = top.issuer.rfc4514_string()
    if system_error is None:
        return passed("tls-chain", f"{_path(chain)}, issued by {issuer} (system trust store)")
    missing = (f"{describe(top)} was issued by {issuer}, which is not served and not a CA "
               "doctor knows")
    if explicit_ca:
        return failed("tls-chain", f"{missing} (nor the --ca CA): an intermediate is missing")
    if private_ca_expected:
        return skipped("tls-chain", f"{missing}: complete only if that is the private CA "
                                    "(give it as --ca to check)")
    return failed("tls-chain", f"{missing} ({system_error}): an intermediate is missing, or "
                               "it is a private CA (give it as --ca)")


def names_result(leaf: x509.Certificate, fqdn: str) -> CheckResult:
    """The server certificate's names cover the FQDN."""
    dns, ips = subject_names(leaf)
    names = ", ".join([*dns, *ips]) or "no names"
    if matches_hostname(leaf, fqdn):
        return passed("tls-names", f"{describe(leaf)} covers {fqdn} (names: {names})")
    return failed("tls-names", f"{describe(leaf)} is for {names}, not {fqdn}")


def expiry_result(chain: Sequence[x509.Certificate], now: datetime) -> CheckResult:
    """Days until the first certificate of the chain expires (warning under 30)."""
    if not chain:
        return skipped("tls-expiry", "no certificate was served")
    for cert in chain:
        if now < cert.not_valid_before_utc:
            return failed("tls-expiry", f"{describe(cert)} is not valid until "
                                        f"{cert.not_valid_before_utc:%Y-%m-%d} (check clocks)")
    first = min(chain, key=lambda cert: cert.not_valid_after_utc)
    seconds = (first.not_valid_after_utc - now).total_seconds()
    days = int(seconds // _SECONDS_PER_DAY)
    when = f"{first.not_valid_after_utc:%Y-%m-%d}"
    who = "" if first is chain[0] else f" ({describe(first)}, the first in the chain to expire)"
    if seconds < 0:
        return failed("tls-expiry", f"expired on {when}{who}")
    if days < EXPIRY_WARNING_DAYS:
        return warned("tls-expiry", f"{days} days left, until {when}{who}: renew it soon")
    return passed("tls-expiry", f"{days} days left, until {when}{who}")


@dataclass(frozen=True, slots=True)
class CacertsFacts:
    """What doctor learnt about `/v3/settings/cacerts` and the chains it verified."""

    value: str | None  # the setting's value; None when it could not be read
    read_error: str = ""
    cacerts_error: str | None = None  # the served chain against the published CA (None: ok)
    fallback_error: str | None = None  # ... against --ca, else the system trust store
    fallback_source: str = "the system trust store"
    no_cacerts: bool = False  # --no-cacerts: a recognised CA, nothing published


_NO_CACERTS_FIX = Fix(other="start corral server with --no-cacerts (and no cacerts.pem) when "
                            "the certificate is from a recognised CA")
_RECOGNISED_FIX = Fix(
    nginx="ssl_certificate: a chain from a recognised CA",
    corral_lb="servers[].tls.certificates[].cert: a chain from a recognised CA",
    other="or publish your private CA: corral server's cacerts.pem (without --no-cacerts)",
)


def cacerts_result(facts: CacertsFacts, published: Sequence[x509.Certificate]) -> CheckResult:
    """With cacerts published, it signs the served chain; without, the chain verifies against
    the system trust store (or --ca)."""
    if facts.value is None:
        return skipped("cacerts", f"could not read /v3/settings/cacerts: {facts.read_error}")
    ca = ", ".join(describe(cert) for cert in published) or "no certificate"
    if facts.value.strip():
        if facts.no_cacerts:
            return failed("cacerts", f"the server publishes {ca} although --no-cacerts says "
                                     "the install uses a recognised CA", _NO_CACERTS_FIX)
        if facts.cacerts_error is None:
            return passed("cacerts", f"{ca} (published) signs the served chain")
        return failed("cacerts", f"the served chain does not verify against the published "
                                 f"{ca}: {facts.cacerts_error}")
    source = facts.fallback_source
    if facts.fallback_error is None:
        return passed("cacerts", f"none published (--no-cacerts): the chain verifies against "
                                 f"{source}")
    return failed("cacerts", f"none published, and the chain does not verify against {source}: "
                             f"{facts.fallback_error}", _RECOGNISED_FIX)


def agent_checksum(value: str) -> str:
    """What an agent computes from `/v3/settings/cacerts` (and `--ca-checksum` pins)."""
    return hashlib.sha256(value.encode()).hexdigest()


def checksum_result(seen: Sequence[tuple[str, str]], expected: str | None) -> CheckResult:
    """Every answer carries the same cacerts, whose checksum is `expected` when given.
    `seen` is (where it was read, value) per answer."""
    if not seen:
        return skipped("cacerts-checksum", "cacerts could not be read")
    if all(not value.strip() for _, value in seen):
        if expected:
            return failed("cacerts-checksum", "no cacerts published, yet --ca-checksum was "
                                              "given: agents given it will refuse the server")
        return skipped("cacerts-checksum", "no cacerts published: agents get no --ca-checksum")
    by_digest: dict[str, list[str]] = {}
    for where, value in seen:
        by_digest.setdefault(agent_checksum(value), []).append(where)
    if len(by_digest) > 1:
        parts = [f"{digest[:16]}… from {_count(wheres)}" for digest, wheres in by_digest.items()]
        return failed("cacerts-checksum", "different cacerts: " + "; ".join(parts))
    digest = next(iter(by_digest))
    answers = f"the same in {len(seen)} answer{'s' if len(seen) != 1 else ''}"
    if expected and expected.strip().lower() != digest:
        return failed("cacerts-checksum", f"sha256 {digest}, not the --ca-checksum given "
                                          f"({expected.strip()}): agents given it refuse it")
    matched = ", = --ca-checksum" if expected else ""
    return passed("cacerts-checksum", f"sha256 {digest} ({answers}{matched})")


def _count(wheres: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for where in wheres:
        counts[where] = counts.get(where, 0) + 1
    return ", ".join(f"{where} ({n} answers)" if n > 1 else where for where, n in counts.items())
