"""Connecting to etcd: check the options and TLS files, reach an endpoint, or say why not.

Every endpoint is asked for the member list at once (each within `dial_timeout`); the first one
in the given order that answers becomes the endpoint in use (later ones are not waited for),
and the member ids the list names are learnt for failover. When none answers, each is probed
with Python's TLS client (`_etcd_probe`) so the error says what to fix: a TLS problem wins over
"unreachable", since it is a configuration mistake.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aetcd.rpc as rpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from corral.store._etcd_channel import Endpoint, EndpointPool, load_tls, parse_endpoint
from corral.store._etcd_errors import EtcdConfigError, EtcdTLSError, EtcdUnreachable, classify
from corral.store._etcd_probe import Probe, TlsFiles, probe

if TYPE_CHECKING:
    from corral.store.etcd import EtcdOptions


@dataclass(frozen=True)
class Connected:
    """A pool whose current endpoint answered, and the store revision it reported."""

    pool: EndpointPool
    revision: int


def _endpoints(options: EtcdOptions) -> list[Endpoint]:
    if isinstance(options.endpoints, str):
        raise EtcdConfigError(
            "etcd endpoints must be a list of client URLs, not one string", "endpoints"
        )
    if not options.endpoints:
        raise EtcdConfigError(
            "no etcd endpoints given; list the cluster's client URLs "
            "(e.g. https://10.0.0.1:2379,https://10.0.0.2:2379)",
            "endpoints",
        )
    tls = any(f is not None for f in (options.cafile, options.certfile, options.keyfile))
    endpoints: list[Endpoint] = []
    for text in options.endpoints:
        endpoint = parse_endpoint(text, tls=tls)
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    return endpoints


def _check_timeouts(options: EtcdOptions) -> None:
    for name in ("dial_timeout", "request_timeout"):
        value = getattr(options, name)
        if not value > 0:
            raise EtcdConfigError(f"etcd {name} must be more than 0 seconds, got {value}", name)


async def _ask(pool: EndpointPool, endpoint: Endpoint, timeout: float) -> Any:
    stub = rpc.ClusterStub(pool.channel(endpoint))
    return await stub.MemberList(rpc.MemberListRequest(), timeout=timeout)


async def open_pool(options: EtcdOptions) -> Connected:
    """A pool on the cluster (see the module docstring); raises EtcdConfigError,
    EtcdTLSError or EtcdUnreachable."""
    _check_timeouts(options)
    endpoints = _endpoints(options)
    files = TlsFiles(options.cafile, options.certfile, options.keyfile)
    pool = EndpointPool(endpoints, load_tls(files.cafile, files.certfile, files.keyfile))
    asks = [asyncio.ensure_future(_ask(pool, e, options.dial_timeout)) for e in endpoints]
    try:
        answers: list[Any] = []
        for endpoint, ask in zip(endpoints, asks, strict=True):
            try:
                answer = await ask
            except grpc.aio.AioRpcError as error:
                answers.append(error)
                continue
            pool.use(endpoint)
            for member in answer.members:
                found = pool.endpoint_for([str(u) for u in member.clientURLs])
                if found is not None:
                    pool.member_ids[found.url] = int(member.ID)
            pool.learn(endpoint, int(answer.header.member_id))
            return Connected(pool, int(answer.header.revision))
        failed = [(e, a) for e, a in zip(endpoints, answers, strict=True)]
        raise await _diagnose(failed, files, options.dial_timeout)
    except BaseException:
        await pool.close()
        raise
    finally:
        for ask in asks:
            if not ask.done():
                ask.cancel()
            elif not ask.cancelled():
                ask.exception()  # retrieved: the answer of an endpoint after the one in use


async def _diagnose(
    failed: list[tuple[Endpoint, Any]], files: TlsFiles, timeout: float
) -> Exception:
    probes: list[Probe] = await asyncio.gather(
        *(asyncio.to_thread(probe, endpoint, files, timeout) for endpoint, _ in failed)
    )
    for found in probes:
        if found.kind == "tls":
            return EtcdTLSError(found.message, found.option)
    reasons: list[str] = []
    for (endpoint, error), found in zip(failed, probes, strict=True):
        if found.kind == "ok":  # plain TLS works; say what gRPC said
            why = classify(error).detail if isinstance(error, grpc.aio.AioRpcError) else error
            reasons.append(f"{endpoint.url}: {why}")
        else:
            reasons.append(found.message)
    urls = tuple(e.url for e, _ in failed)
    return EtcdUnreachable("cannot reach etcd at any of its endpoints: " + "; ".join(reasons), urls)
