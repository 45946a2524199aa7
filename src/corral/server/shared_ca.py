"""The generated CA and the published `cacerts` kept in the store, so that every server of an HA
install uses one CA and publishes one `cacerts`.

Keys (outside `/corral/`, so neither the API nor `/v3/subscribe` ever shows them):

* `/system/ca` — `{"cert": PEM, "key": PEM, "createdBy": server}`: the first server creates it
  with create-if-absent (from a CA already in its data directory, when it has one, so clients
  keep trusting it); the others load it. The leader replaces it when fewer than 30 days remain
  (duty `ca-renewal`), comparing on the revision it read.
* `/system/cacerts` — `{"pem": PEM, "source": "generated"|"cacerts.pem"|"none", "by": server}`:
  what `GET /cacerts` and the `cacerts` setting show. Each server writes its own view at start
  when it differs (servers configured alike write nothing), and every server follows the key.

Each server issues its own serving certificate, for its own names, from the shared CA and keeps
it in its data directory (`corral.server.certs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from corral import pki
from corral.server.certs import (
    CA_DAYS,
    CA_FILE,
    CA_KEY_FILE,
    RENEW_BEFORE,
    CertificateError,
    days_left,
)
from corral.store.base import Compare, CompareFailed, KeyValue, Put, Store, StoreError

log = logging.getLogger("corral.server.shared_ca")

SYSTEM_PREFIX = "/system/"
CA_KEY = SYSTEM_PREFIX + "ca"
CACERTS_KEY = SYSTEM_PREFIX + "cacerts"
SOURCE_GENERATED = "generated"
SOURCE_FILE = "cacerts.pem"
SOURCE_NONE = "none"
FOLLOW_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class StoredCa:
    """The shared CA as read from the store."""

    cert: x509.Certificate
    key: pki.PrivateKey
    mod_revision: int

    @property
    def pem(self) -> str:
        """The CA certificate as PEM text."""
        return pki.certificate_pem(self.cert).decode()


@dataclass(frozen=True)
class Published:
    """The stored `cacerts` value."""

    pem: str
    source: str
    by: str
    mod_revision: int


def encode_ca(cert: x509.Certificate, key: pki.PrivateKey, creator: str) -> bytes:
    """A `/system/ca` value."""
    return json.dumps({
        "cert": pki.certificate_pem(cert).decode(),
        "key": pki.private_key_pem(key).decode(),
        "createdBy": creator,
    }, separators=(",", ":")).encode()


def decode_ca(kv: KeyValue) -> StoredCa:
    """The CA of a `/system/ca` value; CertificateError when it is damaged."""
    source = f"the shared CA in the store (key {CA_KEY})"
    try:
        data = json.loads(kv.value)
        cert = pki.parse_certificates(str(data["cert"]), source)[0]
        key = pki.parse_private_key(str(data["key"]), source)
        pki.check_key_matches(cert, key, source)
    except (ValueError, KeyError, TypeError, pki.PkiError) as exc:
        raise CertificateError(
            f"{source} is damaged ({exc}): restore the etcd cluster from a snapshot, or delete "
            "that key (under --etcd-prefix) to let the next server create a new CA (clients "
            "must then trust the new one)"
        ) from None
    return StoredCa(cert, key, kv.mod_revision)


def decode_published(kv: KeyValue) -> Published | None:
    """The `/system/cacerts` value (None when unreadable)."""
    try:
        data = json.loads(kv.value)
        return Published(str(data["pem"]), str(data["source"]), str(data.get("by", "")),
                         kv.mod_revision)
    except (ValueError, KeyError, TypeError):
        return None


def _on_disk_ca(directory: Path) -> tuple[x509.Certificate, pki.PrivateKey] | None:
    """A usable CA left in a data directory by the embedded-store mode, if any."""
    cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    try:
        cert = pki.load_certificates(cert_path)[0]
        key = pki.load_private_key(key_path)
        pki.check_key_matches(cert, key, str(cert_path), key_source=str(key_path))
    except pki.PkiError:
        return None
    if days_left(cert, datetime.now(UTC)) <= RENEW_BEFORE.days:
        return None
    return cert, key


def new_ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    """A fresh `corral-ca@<unix time>` CA."""
    return pki.create_ca(f"corral-ca@{int(time.time())}", days=CA_DAYS)


async def load_or_create_ca(
    store: Store, creator: str, seed_dir: Path | None = None
) -> tuple[StoredCa, bool]:
    """The shared CA, created (create-if-absent) when the store has none; (CA, created here).
    A CA in `seed_dir` (ca.pem + ca-key.pem) is the one created, when present and current."""
    kv = await store.get(CA_KEY)
    if kv is None:
        seeded = _on_disk_ca(seed_dir) if seed_dir is not None else None
        cert, key = seeded or new_ca()
        try:
            revision = await store.create(CA_KEY, encode_ca(cert, key, creator))
        except CompareFailed:
            kv = await store.get(CA_KEY)
        else:
            how = f"from {seed_dir}" if seeded else "new"
            log.info("stored the shared CA %s (%s, %s)", pki.describe(cert), how,
                     pki.fingerprint_sha256(cert))
            return StoredCa(cert, key, revision), True
    if kv is None:  # created and deleted in between: very unlikely; try once more
        return await load_or_create_ca(store, creator, seed_dir)
    return decode_ca(kv), False


async def renew_ca_if_due(store: Store, creator: str) -> str:
    """Replace the shared CA when fewer than 30 days remain (the leader's duty). The published
    `cacerts` follows in the same transaction when it is the generated CA. Returns a line to
    log, or "" when nothing was due."""
    kv = await store.get(CA_KEY)
    if kv is None:
        return ""
    current = decode_ca(kv)
    left = days_left(current.cert, datetime.now(UTC))
    if left > RENEW_BEFORE.days:
        return ""
    cert, key = new_ca()
    compares = [Compare(CA_KEY, kv.mod_revision)]
    ops = [Put(CA_KEY, encode_ca(cert, key, creator))]
    published_kv = await store.get(CACERTS_KEY)
    published = decode_published(published_kv) if published_kv is not None else None
    if published_kv is not None and published is not None and published.source == (
        SOURCE_GENERATED
    ):
        compares.append(Compare(CACERTS_KEY, published_kv.mod_revision))
        ops.append(Put(CACERTS_KEY, encode_published(
            pki.certificate_pem(cert).decode(), SOURCE_GENERATED, creator)))
    try:
        await store.txn(compares, ops)
    except CompareFailed:
        return ""  # another leader (or an operator) changed it meanwhile: checked again later
    return (f"replaced the shared CA {pki.describe(current.cert)} ({int(left)} days left) by "
            f"{pki.describe(cert)} SHA256 {pki.fingerprint_sha256(cert)}")


def encode_published(pem: str, source: str, by: str) -> bytes:
    """A `/system/cacerts` value."""
    return json.dumps({"pem": pem, "source": source, "by": by},
                      separators=(",", ":")).encode()


async def publish_cacerts(store: Store, pem: str, source: str, by: str) -> Published:
    """Make the stored `cacerts` this server's view when it differs; returns what is stored."""
    for _ in range(5):
        kv = await store.get(CACERTS_KEY)
        stored = decode_published(kv) if kv is not None else None
        if stored is not None and stored.pem == pem and stored.source == source:
            return stored
        if stored is not None:
            log.warning(
                "the cacerts published by %s (%s) differs from this server's (%s): replacing "
                "it; give every server the same cacerts.pem / --no-cacerts",
                stored.by or "another server", stored.source, source,
            )
        try:
            revision = await store.put(CACERTS_KEY, encode_published(pem, source, by),
                                       expected_mod_revision=kv.mod_revision if kv else 0)
        except CompareFailed:
            continue
        return Published(pem, source, by, revision)
    raise CertificateError("could not publish cacerts: the store key kept changing; try again")


class SharedCaFollower:
    """Applies `/system/ca` and `/system/cacerts` on this server whenever they change: a new
    shared CA reissues the serving certificate, a new `cacerts` is what the server publishes."""

    def __init__(
        self,
        store: Store,
        certificates: object,
        publish: Callable[[str], None],
        report: Callable[[str], None],
    ) -> None:
        self.store = store
        self.certificates = certificates  # GeneratedCertificates with a shared CA, or other
        self._publish = publish
        self._report = report

    async def run(self) -> None:
        """Read the keys, then follow their watch; after a store error, read them again."""
        while True:
            try:
                kvs, revision = await self.store.range(SYSTEM_PREFIX)
                for kv in kvs:
                    self._apply(kv)
                watch = self.store.watch(SYSTEM_PREFIX, start_revision=revision + 1)
                try:
                    async for event in watch:
                        if event.type == "put":
                            self._apply(event.kv)
                finally:
                    aclose = getattr(watch, "aclose", None)
                    if aclose is not None:
                        with contextlib.suppress(Exception):
                            await aclose()
            except asyncio.CancelledError:
                raise
            except (StoreError, CertificateError) as exc:
                log.warning("following the shared CA: %s; reading it again shortly", exc)
            await asyncio.sleep(FOLLOW_RETRY_SECONDS)

    def _apply(self, kv: KeyValue) -> None:
        if kv.key == CACERTS_KEY:
            published = decode_published(kv)
            if published is not None:
                self._publish(published.pem)
        elif kv.key == CA_KEY:
            use_ca = getattr(self.certificates, "use_ca", None)
            if use_ca is None or not getattr(self.certificates, "shared", False):
                return
            ca = decode_ca(kv)
            if use_ca(ca.cert, ca.key):
                self._report(f"new shared CA {pki.common_name(ca.cert)} SHA256 "
                             f"{pki.fingerprint_sha256(ca.cert)}")
