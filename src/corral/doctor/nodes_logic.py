"""What the nodes' answers mean: each `/healthz` answers 200 directly, and the load balancer
spreads requests over the servers behind them. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.doctor.catalogue import failed, passed, skipped
from corral.doctor.http_logic import Answer
from corral.doctor.model import CheckResult


@dataclass(frozen=True, slots=True)
class NodeSeen:
    """One --nodes URL asked directly."""

    url: str
    health: Answer
    server: str = ""  # the diagnostic endpoint's server name ("" when not read)


def health_result(nodes: Sequence[NodeSeen]) -> CheckResult:
    """Every node's /healthz answers 200."""
    if not nodes:
        return skipped("nodes-health", "no --nodes given")
    bad = [node for node in nodes if node.health.status != 200]
    if bad:
        shown = "; ".join(f"{node.url}: {_health(node.health)}" for node in bad)
        return failed("nodes-health", shown)
    return passed("nodes-health", ", ".join(f"{node.url} 200 {node.health.body.strip()[:10]}"
                                            for node in nodes))


def _health(answer: Answer) -> str:
    if answer.error:
        return answer.error
    first = next((line for line in answer.body.splitlines() if line.startswith("[-]")), "")
    return f"{answer.status} {first}".strip()


def spread_result(nodes: Sequence[NodeSeen], through_lb: Sequence[str]) -> CheckResult:
    """Requests sent through the load balancer reached the server behind every healthy node.
    `through_lb` is the server name of each answer."""
    if not nodes:
        return skipped("nodes-spread", "no --nodes given")
    healthy = [node for node in nodes if node.health.status == 200]
    known = [node for node in healthy if node.server]
    if not known:
        return skipped("nodes-spread", "no healthy node answered /diagnostics/headers")
    if not through_lb:
        return skipped("nodes-spread", "the load balancer did not answer /diagnostics/headers")
    counts = {node.url: sum(1 for name in through_lb if name == node.server) for node in known}
    others = sum(1 for name in through_lb if name not in {node.server for node in known})
    shown = ", ".join(f"{url} {count}" for url, count in counts.items())
    if others:
        shown += f", other servers {others}"
    saw = f"of {len(through_lb)} requests through the load balancer: {shown}"
    missing = [url for url, count in counts.items() if count == 0]
    if missing:
        return failed("nodes-spread", f"{saw} ({', '.join(missing)} got none)")
    return passed("nodes-spread", saw)
