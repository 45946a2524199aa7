"""The etcd cluster's health for `/healthz?verbose`: the member list, then each member's own
status with a short timeout. The cluster is healthy when a majority of its members answer and
see a leader; an unreachable cluster is reported, never raised."""

from __future__ import annotations

import asyncio
from typing import Any

import aetcd.rpc as rpc  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from corral.store._etcd_channel import REQUIRE_LEADER, Endpoint, EndpointPool, parse_endpoint
from corral.store._etcd_errors import EtcdConfigError, classify
from corral.store.base import MemberStatus, StoreStatus


def _why(error: BaseException, timeout: float) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"unreachable (no answer within {timeout:g}s)"
        return classify(error).detail
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__


async def _member_list(pool: EndpointPool, timeout: float) -> tuple[Any, str]:
    """etcd's member list from the first endpoint that answers (current one first)."""
    order = [pool.current] + [e for e in pool.endpoints if e != pool.current]
    errors: list[str] = []
    for endpoint in order:
        try:
            stub = rpc.ClusterStub(pool.channel(endpoint))
            return await stub.MemberList(rpc.MemberListRequest(), timeout=timeout), ""
        except grpc.aio.AioRpcError as error:
            errors.append(f"{endpoint.url}: {_why(error, timeout)}")
    return None, "; ".join(errors)


async def _member(
    pool: EndpointPool, name: str, endpoint: Endpoint, timeout: float
) -> MemberStatus:
    configured = endpoint in pool.endpoints
    channel = pool.channel(endpoint) if configured else pool.open_channel(endpoint)
    try:
        answer = await rpc.MaintenanceStub(channel).Status(
            rpc.StatusRequest(), timeout=timeout, metadata=REQUIRE_LEADER, wait_for_ready=True
        )
    except (grpc.aio.AioRpcError, TimeoutError) as error:
        return MemberStatus(name, endpoint.url, False, _why(error, timeout))
    finally:
        if not configured:
            await channel.close()
    if configured:
        pool.learn(endpoint, int(answer.header.member_id))
    if list(answer.errors):
        return MemberStatus(name, endpoint.url, False, "; ".join(answer.errors))
    if not answer.leader:
        return MemberStatus(name, endpoint.url, False, "no leader")
    role = "leader" if answer.leader == answer.header.member_id else "follower"
    return MemberStatus(name, endpoint.url, True, role)


def _endpoint_of(pool: EndpointPool, urls: list[str]) -> Endpoint | None:
    endpoint = pool.endpoint_for(urls)
    if endpoint is None and urls:
        try:
            endpoint = parse_endpoint(urls[0], tls=True)
        except EtcdConfigError:
            return None
    return endpoint


async def cluster_status(pool: EndpointPool, timeout: float) -> StoreStatus:
    """The backend "etcd", the endpoint in use and every member's health."""
    listing, error = await _member_list(pool, timeout)
    checks: list[asyncio.Future[MemberStatus]] = []
    names: list[tuple[str, str]] = []  # members without a reachable URL: (name, why)
    if listing is None:
        for endpoint in pool.endpoints:
            checks.append(asyncio.ensure_future(_member(pool, endpoint.url, endpoint, timeout)))
    else:
        for member in listing.members:
            urls = [str(u) for u in member.clientURLs]
            found = _endpoint_of(pool, urls)
            name = str(member.name) or f"{int(member.ID):x}"
            if found is None:
                names.append((name, "not started (no client URL)"))
                continue
            checks.append(asyncio.ensure_future(_member(pool, name, found, timeout)))
    members = list(await asyncio.gather(*checks))
    members += [MemberStatus(name, "", False, why) for name, why in names]
    healthy = sum(1 for m in members if m.healthy)
    total = len(members)
    ok = listing is not None and healthy > total // 2
    if listing is None:
        detail = f"no etcd endpoint answers: {error}"
    elif not ok:
        detail = f"no quorum: {healthy} of {total} members healthy (see a leader)"
    else:
        detail = ""
    return StoreStatus("etcd", pool.current.url, ok, tuple(members), detail)
