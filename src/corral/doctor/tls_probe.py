"""TLS handshakes with the load balancer (blocking; the runner calls them in threads): which
protocol versions it accepts, the chain it serves exactly as served, the ALPN it chooses, and
whether that chain verifies against a given CA."""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OLD_VERSIONS = ("TLSv1", "TLSv1.1")
CURRENT_VERSIONS = ("TLSv1.2", "TLSv1.3")
_VERSIONS = {
    "TLSv1": "TLSv1",
    "TLSv1.1": "TLSv1_1",
    "TLSv1.2": "TLSv1_2",
    "TLSv1.3": "TLSv1_3",
}
# OpenSSL reasons that mean this machine could not even offer the version
_LOCAL_REASONS = frozenset({"NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"})
ACCEPTED, REFUSED, UNTESTABLE = "accepted", "refused", "untestable"
_DER: int = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)  # _ssl.Certificate's DER


@dataclass(frozen=True, slots=True)
class VersionProbe:
    """How one TLS version fared: accepted, refused (by the server) or untestable (here)."""

    version: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TlsObservation:
    """One handshake as a client offering h2 and http/1.1 sees it, plus the version probes."""

    chain: tuple[bytes, ...] = ()  # DER, in the order served
    alpn: str | None = None
    version: str | None = None
    versions: tuple[VersionProbe, ...] = ()
    error: str = ""  # why the handshake failed ("" when it worked)


def _context(alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def _served_chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The peer's chain as sent (Python 3.13's get_unverified_chain, or the same method of
    the `_ssl` object before it was public); the leaf alone if neither exists."""
    getter: Any = getattr(sock, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    items: Any = getter() if getter is not None else None
    if not items:
        leaf = sock.getpeercert(binary_form=True)
        return (leaf,) if leaf else ()
    chain = []
    for item in items:
        chain.append(item if isinstance(item, bytes) else item.public_bytes(_DER))
    return tuple(chain)


def _handshake(fqdn: str, port: int, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection((fqdn, port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=fqdn)
    except BaseException:
        raw.close()
        raise


def probe_version(fqdn: str, port: int, version: str, timeout: float) -> VersionProbe:
    """Offer exactly `version` and see whether the server completes the handshake."""
    context = _context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/1.1: that is the point
        try:
            member = getattr(ssl.TLSVersion, _VERSIONS[version])
            context.minimum_version = member
            context.maximum_version = member
            if version in OLD_VERSIONS:
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as exc:
            return VersionProbe(version, UNTESTABLE, str(exc))
    try:
        with _handshake(fqdn, port, context, timeout):
            return VersionProbe(version, ACCEPTED)
    except ssl.SSLError as exc:
        if exc.reason in _LOCAL_REASONS:
            return VersionProbe(version, UNTESTABLE, exc.reason or "")
        return VersionProbe(version, REFUSED, exc.reason or str(exc))
    except (ConnectionError, TimeoutError) as exc:
        return VersionProbe(version, REFUSED, type(exc).__name__)
    except OSError as exc:
        return VersionProbe(version, UNTESTABLE, str(exc))


def observe(fqdn: str, port: int, timeout: float) -> TlsObservation:
    """The served chain and chosen ALPN (offering h2, http/1.1), and each version's probe."""
    versions = tuple(
        probe_version(fqdn, port, version, timeout) for version in (*OLD_VERSIONS,
                                                                     *CURRENT_VERSIONS)
    )
    try:
        with _handshake(fqdn, port, _context(["h2", "http/1.1"]), timeout) as sock:
            return TlsObservation(
                chain=_served_chain(sock),
                alpn=sock.selected_alpn_protocol(),
                version=sock.version(),
                versions=versions,
            )
    except (OSError, ssl.SSLError) as exc:
        return TlsObservation(versions=versions, error=f"{type(exc).__name__}: {exc}")


def verify(
    fqdn: str, port: int, timeout: float, *, cadata: str | None = None,
    cafile: Path | None = None,
) -> str | None:
    """None when the served chain verifies against `cadata` (PEM), else `cafile`, else the
    system trust store (names are not checked here); else OpenSSL's reason."""
    context = verifying_context(cadata, cafile)
    context.check_hostname = False
    try:
        with _handshake(fqdn, port, context, timeout):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message or exc.reason or str(exc)
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"


def verifying_context(cadata: str | None, cafile: Path | None) -> ssl.SSLContext:
    """A context that checks the chain (against `cadata`, else `cafile`, else the system's
    trust store) and the name: for requests that carry the token."""
    if cadata:
        return ssl.create_default_context(cadata=cadata)
    if cafile is not None:
        return ssl.create_default_context(cafile=str(cafile))
    return ssl.create_default_context()


def unverified_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A context that accepts any chain (what an agent uses to fetch cacerts); doctor's other
    checks look at the chain themselves."""
    return _context(alpn)
