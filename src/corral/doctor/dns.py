"""The DNS check (the `nslookup` step of Rancher's guides): the FQDN resolves, and to what."""

from __future__ import annotations

import asyncio
import socket

from corral.doctor.catalogue import failed, passed, skipped
from corral.doctor.model import CheckResult, Target


def dns_result(target: Target, addresses: list[str], error: str) -> CheckResult:
    """The verdict on a lookup (pure)."""
    if target.is_address:
        return skipped("dns", f"{target.fqdn} is an address, not a name: nothing to resolve "
                              "(agents and browsers need the FQDN)")
    if error:
        return failed("dns", f"{target.fqdn} does not resolve: {error}")
    return passed("dns", f"{target.fqdn} → {', '.join(addresses)}")


async def lookup(target: Target) -> tuple[list[str], str]:
    """(addresses in the resolver's order, "") or ([], why not)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(target.fqdn, target.port, type=socket.SOCK_STREAM),
            target.timeout_s,
        )
    except socket.gaierror as exc:
        return [], exc.strerror or str(exc)
    except TimeoutError:
        return [], f"no answer within {target.timeout_s:g} s"
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses, ""


async def check_dns(target: Target) -> CheckResult:
    """Resolve the FQDN and judge it."""
    if target.is_address:
        return dns_result(target, [], "")
    addresses, error = await lookup(target)
    return dns_result(target, addresses, error)
