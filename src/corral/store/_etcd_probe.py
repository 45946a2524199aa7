"""Why an etcd endpoint cannot be used, in words an operator can act on.

gRPC reports a failed TLS handshake as "failed to connect" with library internals. When
`connect_etcd` finds no usable endpoint it probes each one with Python's own TLS client (the same
CA and client certificate, an HTTP/1.1 `GET /version`, which etcd answers on its client port) and
turns what went wrong into a sentence: unreachable, the server's certificate not signed by the CA,
a certificate that does not name the endpoint, the client certificate refused.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from corral.store._etcd_channel import Endpoint

ProbeKind = Literal["ok", "unreachable", "tls"]

_CLIENT_CERT_ALERTS = (
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_DECRYPT_ERROR",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
)
_HOSTNAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


@dataclass(frozen=True, slots=True)
class Probe:
    """The outcome for one endpoint: `kind`, and `option` the file to fix for a TLS problem."""

    kind: ProbeKind
    message: str
    option: str = ""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The paths of the TLS files (for the probe's context and for naming them)."""

    cafile: Path | None
    certfile: Path | None
    keyfile: Path | None


def _context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.cafile) if files.cafile else None)
    if files.certfile is not None and files.keyfile is not None:
        context.load_cert_chain(str(files.certfile), str(files.keyfile))
    return context


def _exchange(endpoint: Endpoint, files: TlsFiles, timeout: float) -> bytes:
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
        if not endpoint.secure:
            tls_sock: socket.socket = sock
        else:
            tls_sock = _context(files).wrap_socket(sock, server_hostname=endpoint.host)
        with tls_sock:
            tls_sock.sendall(b"GET /version HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
            return tls_sock.recv(512)


def probe(endpoint: Endpoint, files: TlsFiles, timeout: float) -> Probe:
    """Try `endpoint` with plain sockets and the TLS files; say what is wrong, if anything."""
    url = endpoint.url
    try:
        answer = _exchange(endpoint, files, timeout)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code in _HOSTNAME_MISMATCH:
            return Probe(
                "tls",
                f"the server certificate of etcd at {url} does not name {endpoint.host} "
                f"({exc.verify_message}); reissue etcd's certificate with {endpoint.host} among "
                "its names, or use the name it has in the endpoint",
                "endpoints",
            )
        ca = str(files.cafile) if files.cafile else "the system's trusted CAs"
        return Probe(
            "tls",
            f"the server certificate of etcd at {url} is not signed by the CA in {ca} "
            f"({exc.verify_message}); give the CA that signed etcd's server certificates",
            "cafile",
        )
    except ssl.SSLError as exc:
        reason = str(exc.reason or "")
        if reason in _CLIENT_CERT_ALERTS:
            if files.certfile is None:
                return Probe(
                    "tls",
                    f"etcd at {url} requires a client certificate ({reason.lower()}); give a "
                    "client certificate and its key signed by the CA etcd trusts",
                    "certfile",
                )
            return Probe(
                "tls",
                f"etcd at {url} refused the client certificate {files.certfile} "
                f"({reason.lower()}); give a client certificate signed by the CA etcd trusts "
                "(its --trusted-ca-file)",
                "certfile",
            )
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) and files.certfile:
            # TLS 1.3: a refused client certificate shows as the server closing right after
            # the handshake, not as an alert
            return Probe(
                "tls",
                f"etcd at {url} closed the connection right after the TLS handshake: it "
                f"refused the client certificate {files.certfile}; give a client certificate "
                "signed by the CA etcd trusts (its --trusted-ca-file)",
                "certfile",
            )
        return Probe("tls", f"TLS with etcd at {url} failed: {exc}", "cafile")
    except ConnectionRefusedError:
        return Probe("unreachable", f"{url}: connection refused (is etcd running there?)")
    except TimeoutError:
        return Probe("unreachable", f"{url}: no answer within {timeout:g}s")
    except OSError as exc:
        return Probe("unreachable", f"{url}: {exc.strerror or exc}")
    if not answer:
        return Probe("unreachable", f"{url}: the connection was closed without an answer")
    if not answer.startswith(b"HTTP/"):
        return Probe("unreachable", f"{url}: does not answer like etcd")
    return Probe("ok", f"{url}: reachable")
