"""Endpoints, TLS material and the gRPC channels of the etcd backend.

`EndpointPool` holds one channel per endpoint (opened on first use, reused afterwards) and the
endpoint requests go to now. `failed(endpoint)` moves requests to the next endpoint and marks the
failed member as a suspect: before the next request the store asks the new endpoint who leads
(`settle`), so that it does not send writes to a follower still forwarding to a dead leader.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from corral.pki import PkiError, check_key_matches, parse_certificates, parse_private_key
from corral.store._etcd_errors import EtcdConfigError
from corral.store._feed import StoreClosed

#: Metadata sent with every request: etcd refuses it with "no leader" instead of waiting when the
#: member has no leader (and cancels such watches), which makes failover prompt.
REQUIRE_LEADER = (("hasleader", "true"),)

#: How long a member whose connection broke stays suspect (longer than an election takes).
SUSPECT_SECONDS = 5.0

_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL: `url` as given (normalised), `target` host:port for gRPC."""

    url: str
    target: str
    host: str
    port: int
    secure: bool


def parse_endpoint(text: str, *, tls: bool) -> Endpoint:
    """An Endpoint for `https://host:port` / `http://host:port` (or `host:port`: https when TLS
    files are given). EtcdConfigError(option="endpoints") for anything else."""
    raw = text.strip()
    if "://" not in raw:
        raw = ("https://" if tls else "http://") + raw
    parts = urlsplit(raw)
    fix = "write it as https://HOST:PORT (etcd's client URL, e.g. https://10.0.0.1:2379)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EtcdConfigError(f"etcd endpoint {text!r} is not a client URL; {fix}", "endpoints")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EtcdConfigError(f"etcd endpoint {text!r} has a path; {fix}", "endpoints")
    try:
        port = parts.port or 2379
    except ValueError:
        raise EtcdConfigError(
            f"etcd endpoint {text!r} has a bad port; {fix}", "endpoints"
        ) from None
    host = parts.hostname
    try:
        shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        shown = host
    return Endpoint(
        url=f"{parts.scheme}://{shown}:{port}",
        target=f"{shown}:{port}",
        host=host,
        port=port,
        secure=parts.scheme == "https",
    )


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes of the CA bundle and the client certificate and key (each optional)."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None


def _read(path: Path, what: str, option: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EtcdConfigError(f"etcd {what} {path} does not exist", option) from None
    except IsADirectoryError:
        raise EtcdConfigError(
            f"etcd {what} {path} is a directory, not a PEM file", option
        ) from None
    except PermissionError:
        raise EtcdConfigError(
            f"etcd {what} {path} cannot be read (permission denied)", option
        ) from None
    except OSError as exc:
        raise EtcdConfigError(
            f"etcd {what} {path} cannot be read: {exc.strerror}", option
        ) from None
    if not data.strip():
        raise EtcdConfigError(f"etcd {what} {path} is empty", option)
    return data


def load_tls(cafile: Path | None, certfile: Path | None, keyfile: Path | None) -> TlsMaterial:
    """Read and check the TLS files: each readable PEM, the key the certificate's own."""
    if (certfile is None) != (keyfile is None):
        given, missing = ("certfile", "keyfile") if keyfile is None else ("keyfile", "certfile")
        raise EtcdConfigError(
            f"etcd client TLS needs both a certificate and its key: {given} is set, "
            f"{missing} is not",
            missing,
        )
    ca = cert = key = None
    if cafile is not None:
        ca = _read(cafile, "CA file", "cafile")
        try:
            parse_certificates(ca, str(cafile))
        except PkiError as exc:
            raise EtcdConfigError(f"etcd CA file: {exc}", "cafile") from None
    if certfile is not None and keyfile is not None:
        cert = _read(certfile, "client certificate", "certfile")
        key = _read(keyfile, "client key", "keyfile")
        try:
            certs = parse_certificates(cert, str(certfile))
        except PkiError as exc:
            raise EtcdConfigError(f"etcd client certificate: {exc}", "certfile") from None
        try:
            private = parse_private_key(key, str(keyfile))
        except PkiError as exc:
            raise EtcdConfigError(f"etcd client key: {exc}", "keyfile") from None
        try:
            check_key_matches(certs[0], private, str(certfile), key_source=str(keyfile))
        except PkiError as exc:
            raise EtcdConfigError(f"etcd client TLS: {exc}", "keyfile") from None
    return TlsMaterial(ca, cert, key)


class EndpointPool:
    """The endpoints, their channels, and which one requests use now."""

    def __init__(self, endpoints: Sequence[Endpoint], tls: TlsMaterial) -> None:
        self.endpoints = tuple(endpoints)
        self._tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._current = 0
        self._closed = False
        self.member_ids: dict[str, int] = {}  # endpoint url -> etcd member id, as learnt
        self._suspects: dict[int, float] = {}  # member id -> when its endpoint broke

    @property
    def current(self) -> Endpoint:
        """The endpoint requests go to now."""
        return self.endpoints[self._current]

    def use(self, endpoint: Endpoint) -> None:
        """Send requests to `endpoint` from now on."""
        self._current = self.endpoints.index(endpoint)

    def channel(self, endpoint: Endpoint) -> grpc.aio.Channel:
        """The (shared) channel to `endpoint`."""
        channel = self._channels.get(endpoint.url)
        if channel is None:
            if self._closed:
                raise StoreClosed()
            channel = self.open_channel(endpoint)
            self._channels[endpoint.url] = channel
        return channel

    def open_channel(self, endpoint: Endpoint) -> grpc.aio.Channel:
        """A new channel to `endpoint` with this pool's TLS material (the caller closes it)."""
        if not endpoint.secure:
            return grpc.aio.insecure_channel(endpoint.target, options=_CHANNEL_OPTIONS)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self._tls.ca,
            private_key=self._tls.key,
            certificate_chain=self._tls.cert,
        )
        return grpc.aio.secure_channel(endpoint.target, credentials, options=_CHANNEL_OPTIONS)

    def failed(self, endpoint: Endpoint, *, gone: bool = False) -> None:
        """`endpoint` failed: move to the next one (unless another request already did). With
        `gone` (its connection was refused or broke) its member is suspected of being dead for
        SUSPECT_SECONDS, and a member that names it as leader is not trusted meanwhile."""
        member = self.member_ids.get(endpoint.url)
        if gone and member:
            self._suspects[member] = time.monotonic()
        if self.current == endpoint and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)

    def suspects(self) -> set[int]:
        """The members suspected of being dead now."""
        now = time.monotonic()
        for member, since in list(self._suspects.items()):
            if now - since > SUSPECT_SECONDS:
                del self._suspects[member]
        return set(self._suspects)

    def clear_suspects(self) -> None:
        """A live leader was seen: the suspects no longer matter."""
        self._suspects.clear()

    def learn(self, endpoint: Endpoint, member_id: int) -> None:
        """`endpoint` answered as member `member_id` (a member that answers is not suspect)."""
        if member_id:
            self.member_ids[endpoint.url] = member_id
            self._suspects.pop(member_id, None)

    def endpoint_for(self, urls: Sequence[str]) -> Endpoint | None:
        """The configured endpoint among a member's client URLs, if any."""
        for url in urls:
            for endpoint in self.endpoints:
                if endpoint.url == url.rstrip("/"):
                    return endpoint
        return None

    async def close(self) -> None:
        """Close every channel (their calls are cancelled)."""
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
