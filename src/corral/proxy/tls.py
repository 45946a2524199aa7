"""TLS contexts for listeners: certificate chains chosen by SNI, TLS 1.2 minimum, modern
ciphers, the configured key-exchange groups (X25519 first by default), ALPN.

The groups of a handshake are those of the listener's first (default) context: OpenSSL keeps
the groups of the context a connection started with when the SNI callback switches it to
another certificate's context, which is why `corral lb --check` requires one `tls.groups` per
listener."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from corral.config.lb import DEFAULT_TLS_GROUPS, Tls
from corral.pki import load_certificates, matches_hostname
from corral.proxy.tls_groups import GroupsUnavailable, set_groups

# Mozilla's "intermediate" TLS 1.2 suites (forward secrecy + AEAD only); TLS 1.3 suites are fixed.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
_SNI_ATTRIBUTE = "corral_server_name"  # set on the SSLObject by the SNI callback
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class _Candidate:
    context: ssl.SSLContext
    certificate: object  # x509.Certificate, for name matching


def _context(cert: str, key: str, tls: Tls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = sorted(_VERSIONS[p] for p in tls.protocols)
    context.minimum_version = versions[0]
    context.maximum_version = versions[-1]
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        set_groups(context, tls.groups)
    except GroupsUnavailable:
        if tls.groups != list(DEFAULT_TLS_GROUPS):
            raise
        # this Python cannot set the list: OpenSSL's own default (X25519 first as well) stays
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(list(tls.alpn))
    return context


def build_server_context(configs: Sequence[Tls]) -> ssl.SSLContext:
    """One SSLContext for a listener; an SNI callback switches to the certificate whose names
    match the requested server name (the first certificate is the default)."""
    candidates: list[_Candidate] = []
    for tls in configs:
        for item in tls.certificates:
            leaf = load_certificates(item.cert)[0]
            candidates.append(_Candidate(_context(item.cert, item.key, tls), leaf))
    default = candidates[0].context
    if len(candidates) > 1 or len(configs) > 1:
        by_name: dict[str, ssl.SSLContext] = {}

        def choose(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if not name:
                return
            setattr(sock, _SNI_ATTRIBUTE, name)  # for the connection's server block
            chosen = by_name.get(name)
            if chosen is None:
                chosen = default
                for candidate in candidates:
                    if matches_hostname(candidate.certificate, name):  # type: ignore[arg-type]
                        chosen = candidate.context
                        break
                if len(by_name) < 1024:
                    by_name[name] = chosen
            if chosen is not default:
                sock.context = chosen

        default.sni_callback = choose
    return default


def requested_server_name(ssl_object: object) -> str | None:
    """The server name a client asked for (SNI) on a listener with several server blocks, as
    the SNI callback recorded it; None when it sent none or the listener has one block."""
    name = getattr(ssl_object, _SNI_ATTRIBUTE, None)
    return name if isinstance(name, str) else None
