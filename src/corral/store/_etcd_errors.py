"""The etcd backend's errors, and what a failed gRPC call tells about the request it carried.

A failed call is one of four kinds, which decide the retry rules (docs/store.md, "## etcd"):

* `refused` — the request never reached etcd (connection refused, TLS handshake failed, no
  route): nothing was applied; try the next endpoint.
* `no_leader` — the member answered that it has no leader (or dropped the proposal for that
  reason) before doing anything: nothing was applied; try the next endpoint.
* `lost` — the connection broke or the deadline passed while the request was out: a write may or
  may not have been applied.
* `answer` — etcd answered with an error about the request itself (bad argument, unknown lease,
  compacted revision, no space): not a connection problem; never retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import grpc  # type: ignore[import-untyped]

from corral.store.base import StoreError, StoreUnavailable

FailureKind = Literal["refused", "no_leader", "lost", "answer"]

_REFUSED_MARKERS = (
    "failed to connect",
    "connection refused",
    "handshake",
    "no route to host",
    "dns resolution failed",
    "network is unreachable",
)
_NO_LEADER_MARKERS = (
    "etcdserver: no leader",
    "raft proposal dropped",
    "etcdserver: not capable",
    "etcdserver: too many requests",
    "etcdserver: leader changed",
)


class EtcdConfigError(StoreError):
    """The etcd options or the files they name are wrong; `option` names the field
    (`endpoints`, `cafile`, `certfile`, `keyfile`, ...) so a caller can name its own flag."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class EtcdTLSError(EtcdConfigError):
    """The TLS handshake with etcd failed for a reason the operator must fix (wrong CA, a
    refused client certificate, a server certificate that does not name the endpoint)."""


class EtcdUnreachable(StoreUnavailable):
    """No etcd endpoint could be reached when connecting; the message lists each one."""

    def __init__(self, message: str, endpoints: tuple[str, ...]) -> None:
        super().__init__(message)
        self.endpoints = endpoints


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed call means for the request: its kind, and a short text for messages."""

    kind: FailureKind
    detail: str
    code: str


def classify(error: grpc.aio.AioRpcError) -> Failure:
    """The kind of a gRPC failure (see the module docstring)."""
    code = error.code()
    details = str(error.details() or "")
    low = details.lower()
    name = str(getattr(code, "name", code))
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Failure("lost", "no answer before the deadline", name)
    if any(marker in low for marker in _NO_LEADER_MARKERS):
        return Failure("no_leader", details, name)
    if code == grpc.StatusCode.UNAVAILABLE:
        if any(marker in low for marker in _REFUSED_MARKERS):
            return Failure("refused", _short(details), name)
        if "request timed out" in low or "server stopped" in low:
            return Failure("lost", details, name)
        return Failure("lost", _short(details), name)
    unclear = code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    if unclear and ("request timed out" in low or "server stopped" in low or not low):
        return Failure("lost", details or name, name)
    return Failure("answer", details, name)


_CONNECT_PREFIX = re.compile(
    r"^failed to connect to all addresses; last error: [A-Z_]+: (ipv[46]:\S+: )?"
)


def _short(details: str) -> str:
    """gRPC's 'failed to connect to all addresses; last error: UNKNOWN: ipv4:...: X' → X."""
    return _CONNECT_PREFIX.sub("", details).strip() or details
