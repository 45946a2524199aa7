"""The server's certificates: the TLS-directory rules, the generated CA and serving certificates.

TLS directory (`--tls-dir`, like Rancher's /etc/rancher/ssl) may hold `cert.pem`, `key.pem` and
`cacerts.pem`:

* `cert.pem` without `key.pem` (or the reverse) is an error naming the missing file;
* `cert.pem` + `key.pem` need exactly one of `cacerts.pem` (self-signed or private CA) and
  `--no-cacerts` (recognised CA); both or neither is an error saying which to use;
* no `cert.pem`/`key.pem`: the HTTPS listener uses a serving certificate from a CA the server
  generates (`corral-ca@<unix time>`, 10 years), kept under `<data-dir>/tls/`. The `cacerts`
  setting then holds `cacerts.pem` when given (TLS terminated elsewhere with that CA), nothing with
  `--no-cacerts` (a recognised CA elsewhere), else the generated CA. With etcd (HA) the CA lives
  in the store, shared by every server (corral.server.shared_ca); each server still issues and
  keeps its own serving certificate under `<data-dir>/tls/`.

Serving certificates live 365 days and are reissued when fewer than 30 days remain (checked at
start and daily), when the host gains a name or address, or when a client's SNI names the
server-url host (a name "learned from SNI"; learned names are kept across restarts).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from corral import pki
from corral.server.hostnames import LOCALHOST, local_addresses, local_names, server_url_host

log = logging.getLogger("corral.server.certs")

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CACERTS_FILE = "cacerts.pem"
DEFAULT_TLS_DIR = Path("/etc/corral/ssl")
GENERATED_SUBDIR = "tls"
CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
SERVING_FILE, SERVING_KEY_FILE = "serving.pem", "serving-key.pem"
LEARNED_FILE = "learned-names.json"
CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = timedelta(days=30)
CHECK_INTERVAL_SECONDS = 24 * 3600.0
MAX_LEARNED_NAMES = 16
ALPN = ["http/1.1"]


class CertificateError(Exception):
    """The TLS files cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class TlsPlan:
    """What the TLS directory and --no-cacerts call for."""

    tls_dir: Path
    provided: bool  # cert.pem + key.pem are given: serve them
    cacerts_file: Path | None  # cacerts.pem to publish, if any
    no_cacerts: bool

    @property
    def cert_path(self) -> Path:
        return self.tls_dir / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.tls_dir / KEY_FILE


def plan_tls(tls_dir: Path, *, no_cacerts: bool) -> TlsPlan:
    """Apply the TLS-directory rules (module docstring); raise CertificateError when they fail."""
    cert, key, cacerts = (tls_dir / name for name in (CERT_FILE, KEY_FILE, CACERTS_FILE))
    has_cert, has_key, has_cacerts = cert.is_file(), key.is_file(), cacerts.is_file()
    if has_cert and not has_key:
        raise CertificateError(
            f"{cert} is present but {key} is missing: add key.pem (the private key of cert.pem), "
            "or remove cert.pem to let corral generate its own certificate"
        )
    if has_key and not has_cert:
        raise CertificateError(
            f"{key} is present but {cert} is missing: add cert.pem (the certificate for key.pem, "
            "followed by its intermediates), or remove key.pem to let corral generate its own "
            "certificate"
        )
    provided = has_cert and has_key
    if has_cacerts and no_cacerts:
        what = "cert.pem" if provided else "the certificate your load balancer serves"
        raise CertificateError(
            f"{cacerts} and --no-cacerts contradict each other: use cacerts.pem (without "
            f"--no-cacerts) when {what} is self-signed or issued by a private CA, or "
            "--no-cacerts (and remove cacerts.pem) when it is signed by a recognised CA"
        )
    if provided and not has_cacerts and not no_cacerts:
        raise CertificateError(
            f"{cert} and {key} are present but there is neither {cacerts} nor --no-cacerts: "
            "add cacerts.pem (the CA certificate that issued cert.pem) when cert.pem is "
            "self-signed or issued by a private CA, or pass --no-cacerts when it is signed by a "
            "recognised CA"
        )
    return TlsPlan(tls_dir, provided, cacerts if has_cacerts else None, no_cacerts)


def read_cacerts(path: Path) -> str:
    """The PEM text of a cacerts.pem, checked to hold at least one certificate."""
    try:
        pki.load_certificates(path)
    except pki.PkiError as exc:
        raise CertificateError(str(exc)) from None
    return path.read_text()


class ServingCertificates(Protocol):
    """What the HTTPS listener and the rest of the server need from either source."""

    ssl_context: ssl.SSLContext

    def covers(self, name: str) -> bool:
        """True when the serving certificate is valid for `name`."""

    def check(self) -> bool:
        """Renew what needs renewing; True when something was reissued."""

    def status(self) -> dict[str, Any]:
        """Facts for /healthz?verbose (never secrets)."""


def new_server_context() -> ssl.SSLContext:
    """A TLS server context: TLS 1.2 minimum, ALPN http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    return context


def days_left(cert: x509.Certificate, now: datetime) -> float:
    """Days until `cert` expires (fractional; negative once expired)."""
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


class ProvidedCertificate:
    """An operator's cert.pem + key.pem, checked once at start."""

    def __init__(self, plan: TlsPlan) -> None:
        try:
            chain = pki.load_certificates(plan.cert_path)
            key = pki.load_private_key(plan.key_path)
            pki.check_key_matches(
                chain[0], key, str(plan.cert_path), key_source=str(plan.key_path)
            )
            pki.check_chain_order(chain, str(plan.cert_path))
            pki.check_current(chain[0], source=str(plan.cert_path))
            if plan.cacerts_file is not None:
                _check_anchored(chain, pki.load_certificates(plan.cacerts_file), plan)
        except pki.PkiError as exc:
            raise CertificateError(str(exc)) from None
        self.chain = chain
        self.ssl_context = new_server_context()
        self.ssl_context.load_cert_chain(plan.cert_path, plan.key_path)

    def covers(self, name: str) -> bool:
        return pki.matches_hostname(self.chain[0], name)

    def check(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        leaf = self.chain[0]
        return {
            "source": "provided",
            "subject": pki.describe(leaf),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "days_left": int(days_left(leaf, datetime.now(UTC))),
        }


def _check_anchored(
    chain: list[x509.Certificate], cacerts: list[x509.Certificate], plan: TlsPlan
) -> None:
    top = chain[-1]
    if top in cacerts or any(pki.issued_by(top, ca) for ca in cacerts):
        return
    raise CertificateError(
        f"{plan.cert_path} ({pki.describe(top)}) was not issued by any certificate in "
        f"{plan.cacerts_file}: put the CA that issued it in cacerts.pem, or use --no-cacerts "
        "(and remove cacerts.pem) when it is signed by a recognised CA"
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically; the file is readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class GeneratedCertificates:
    """The server's own CA (or, with `shared_ca`, the CA every server of an HA install shares
    through the store) and the serving certificate it issues, persisted in `directory`.

    With `shared_ca` nothing of the CA is written to `directory` and `check()` never replaces
    the CA: the leader does (corral.server.shared_ca), and `use_ca()` applies a new one."""

    def __init__(
        self,
        directory: Path,
        *,
        server_url: Callable[[], str],
        shared_ca: tuple[x509.Certificate, pki.PrivateKey] | None = None,
    ) -> None:
        self.directory = directory
        self._server_url = server_url  # the current server-url setting
        self._covered: set[str] = set()  # names known to be covered by `serving`
        self.shared = shared_ca is not None
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca_cert, self.ca_key = shared_ca or self._load_or_create_ca()
        self.learned: list[str] = self._load_learned()
        self.serving: x509.Certificate | None = None
        self.ssl_context = new_server_context()
        self.ssl_context.sni_callback = self._on_sni
        self._latest = self.ssl_context
        self._load_serving()
        self.check()

    # -- CA ---------------------------------------------------------------------------------
    def _load_or_create_ca(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        cert_path, key_path = self.directory / CA_FILE, self.directory / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            try:
                cert = pki.load_certificates(cert_path)[0]
                key = pki.load_private_key(key_path)
                pki.check_key_matches(cert, key, str(cert_path), key_source=str(key_path))
                if days_left(cert, datetime.now(UTC)) > RENEW_BEFORE.days:
                    return cert, key
                log.warning("the generated CA in %s expires soon: creating a new CA", cert_path)
            except pki.PkiError as exc:
                raise CertificateError(
                    f"{exc} — the generated CA in {self.directory} is damaged: restore it from a "
                    f"backup, or remove {cert_path} and {key_path} to create a new CA (clients "
                    "must then trust the new one)"
                ) from None
        cert, key = pki.create_ca(f"corral-ca@{int(time.time())}", days=CA_DAYS)
        _write_private(key_path, pki.private_key_pem(key))
        _write_private(cert_path, pki.certificate_pem(cert))
        log.info("created CA %s (%s)", pki.describe(cert), pki.fingerprint_sha256(cert))
        return cert, key

    @property
    def ca_pem(self) -> str:
        """The CA certificate as PEM text."""
        return pki.certificate_pem(self.ca_cert).decode()

    # -- learned names ----------------------------------------------------------------------
    def _load_learned(self) -> list[str]:
        try:
            names = json.loads((self.directory / LEARNED_FILE).read_text())
        except (OSError, ValueError):
            return []
        return [n for n in names if isinstance(n, str)][:MAX_LEARNED_NAMES]

    def _save_learned(self) -> None:
        _write_private(self.directory / LEARNED_FILE, json.dumps(self.learned).encode())

    def learnable(self, name: str) -> bool:
        """True when an SNI name may be added: it is the server-url host."""
        host = server_url_host(self._server_url())
        return bool(host) and name.lower().rstrip(".") == host

    # -- serving certificate ----------------------------------------------------------------
    def wanted_names(self) -> tuple[list[str], list[str]]:
        """(DNS names, IP addresses) the serving certificate should cover."""
        learned = [name for name in self.learned if self.learnable(name)]
        dns = list(dict.fromkeys([LOCALHOST, *local_names(), *learned]))
        ips = list(dict.fromkeys(["127.0.0.1", "::1", *local_addresses()]))
        return dns, ips

    def _load_serving(self) -> None:
        cert_path = self.directory / SERVING_FILE
        key_path = self.directory / SERVING_KEY_FILE
        try:
            cert = pki.load_certificates(cert_path)[0]
            pki.check_key_matches(cert, pki.load_private_key(key_path), str(cert_path))
        except pki.PkiError:
            return
        if pki.issued_by(cert, self.ca_cert):
            self.serving = cert
            self._reload(cert_path, key_path)

    def _needs_reissue(self, now: datetime) -> str:
        if self.serving is None:
            return "no serving certificate yet"
        if self.serving.not_valid_after_utc - now < RENEW_BEFORE:
            return f"it expires on {self.serving.not_valid_after_utc:%Y-%m-%d}"
        dns, ips = self.wanted_names()
        missing = [name for name in [*dns, *ips] if not pki.matches_hostname(self.serving, name)]
        return f"it does not cover {', '.join(missing)}" if missing else ""

    def use_ca(self, cert: x509.Certificate, key: pki.PrivateKey) -> bool:
        """Serve from a new shared CA (another server renewed it); True when it changed."""
        if cert == self.ca_cert:
            return False
        self.ca_cert, self.ca_key = cert, key
        self._issue(f"the shared CA is now {pki.describe(cert)}")
        return True

    def check(self) -> bool:
        """Reissue the serving certificate when missing, expiring or short of a name."""
        expiring = days_left(self.ca_cert, datetime.now(UTC)) <= RENEW_BEFORE.days
        if expiring and not self.shared:
            self.ca_cert, self.ca_key = self._load_or_create_ca()
            self.serving = None
        reason = self._needs_reissue(datetime.now(UTC))
        if not reason:
            return False
        self._issue(reason)
        return True

    def _issue(self, reason: str) -> None:
        dns, ips = self.wanted_names()
        cert, key = pki.issue_certificate(
            self.ca_cert, self.ca_key, common_name="corral", dns_names=dns, ip_addresses=ips,
            days=SERVING_DAYS,
        )
        cert_path = self.directory / SERVING_FILE
        key_path = self.directory / SERVING_KEY_FILE
        _write_private(key_path, pki.private_key_pem(key))
        _write_private(cert_path, pki.certificate_pem(cert) + pki.certificate_pem(self.ca_cert))
        self.serving = cert
        self._covered = set()
        self._reload(cert_path, key_path)
        log.info("issued serving certificate for %s (%s)", ", ".join(dns + ips), reason)

    def _reload(self, cert_path: Path, key_path: Path) -> None:
        """Serve the new files: new handshakes use them; `_latest` serves an in-flight one."""
        self.ssl_context.load_cert_chain(cert_path, key_path)
        fresh = new_server_context()
        fresh.load_cert_chain(cert_path, key_path)
        self._latest = fresh

    def learn(self, name: str) -> bool:
        """Add an SNI name when it is the server-url host; True when the certificate changed."""
        name = name.lower().rstrip(".")
        if not self.learnable(name) or self.covers(name):
            return False
        if name not in self.learned:
            self.learned = [*self.learned, name][-MAX_LEARNED_NAMES:]
            self._save_learned()
        self._issue(f"a client asked for {name} (SNI) and it is the server-url host")
        return True

    def _on_sni(self, conn: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        if server_name:
            try:
                changed = self.learn(server_name)
            except Exception:  # never fail a handshake over learning
                log.exception("could not add %s to the serving certificate", server_name)
                changed = False
            if changed:
                conn.context = self._latest

    def covers(self, name: str) -> bool:
        if name in self._covered:
            return True
        if self.serving is None or not pki.matches_hostname(self.serving, name):
            return False
        self._covered.add(name)
        return True

    def status(self) -> dict[str, Any]:
        serving = self.serving
        facts: dict[str, Any] = {
            "source": "generated-shared" if self.shared else "generated",
            "ca": pki.describe(self.ca_cert),
            "ca_fingerprint": pki.fingerprint_sha256(self.ca_cert),
        }
        if serving is not None:
            facts["not_after"] = serving.not_valid_after_utc.isoformat()
            facts["days_left"] = int(days_left(serving, datetime.now(UTC)))
        return facts
