"""Who this server is: the host's names and addresses, and which Host names it serves."""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from collections.abc import Callable

import psutil

from corral.server.https import parse_host

LOCALHOST = "localhost"
ADDRESS_CACHE_SECONDS = 60.0
"""The host's addresses are read again after this long (DHCP, new interfaces)."""


@functools.cache
def local_names() -> tuple[str, ...]:
    """The host's own DNS names (short name and FQDN), lower-case, without duplicates.

    Read once per process (the FQDN may need a DNS lookup, which must not block the event loop
    later); a renamed host is picked up at the next start."""
    names: list[str] = []
    for name in (socket.gethostname(), socket.getfqdn()):
        parsed = parse_host(name)
        if parsed is None or parsed.port is not None or _is_ip(parsed.name):
            continue
        if parsed.name not in names:
            names.append(parsed.name)
    return tuple(names)


def local_addresses() -> list[str]:
    """Every IPv4/IPv6 address of the host's interfaces (IPv6 link-local ones left out)."""
    found: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                address = ipaddress.ip_address(entry.address.split("%", 1)[0])
            except ValueError:
                continue
            if address.is_link_local and address.version == 6:
                continue
            if str(address) not in found:
                found.append(str(address))
    return found


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def server_url_host(server_url: str) -> str:
    """The lower-case host of a server-url (IPv6 without brackets), "" when unset or invalid."""
    if "://" not in server_url:
        return ""
    authority = server_url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    parsed = parse_host(authority)
    return parsed.name if parsed is not None else ""


class ServedHosts:
    """`served(name)`: True for localhost, loopback addresses, the host's names and addresses,
    the server-url host and any name the serving certificate covers. Used by the HTTP listener
    so a forged Host never becomes a redirect target."""

    def __init__(
        self, *, server_url: Callable[[], str], certificate_covers: Callable[[str], bool]
    ) -> None:
        self._server_url = server_url
        self._certificate_covers = certificate_covers
        self._local: frozenset[str] = frozenset()
        self._read_at = -ADDRESS_CACHE_SECONDS
        self._local_identity()  # read names now, at start-up, not in the first request

    def _local_identity(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._read_at >= ADDRESS_CACHE_SECONDS:
            self._local = frozenset([LOCALHOST, *local_names(), *local_addresses()])
            self._read_at = now
        return self._local

    def __call__(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if not name:
            return False
        if name in self._local_identity() or _is_loopback(name):
            return True
        if name == server_url_host(self._server_url()):
            return True
        return self._certificate_covers(name)
