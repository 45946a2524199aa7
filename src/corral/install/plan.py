"""The plan: desired state against the state file and live probes → what to do, per node and
service (RKE's `cluster/plan.go`, but pure and printable: `corral up --dry-run` prints it).

For each node of the cluster file and each of its services, in phase order (etcd, server,
ingress, then the external load balancer):

    not in the state file                      → create
    in it with another digest                  → change (restart with the new command line/files)
    same digest, supervisor or service down    → start
    same digest, running and healthy           → keep
    in the state file, not in the cluster file → remove (the service, or the whole node)

plus the certificates to issue, the admin token to obtain and the output files to write.

On a cluster that runs (`PlanInput.rolling`), the plan is a reconcile: a new etcd node's member
is added to the running cluster (`member-add`) before it starts; the load balancer's
configuration gains the new nodes and loses the removed ones (`reload`) once the new nodes'
services are up; the changes of running nodes are rolled out node by node, each node taken out
of the load balancer (`drain`) while its services restart and put back (`restore`) once healthy;
then a removed node is taken out of the load balancer, its etcd member removed
(`member-remove`) and its services stopped and deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from corral.install.state import LB_NODE, NodeState

Action = Literal["create", "change", "start", "keep", "remove", "issue", "login", "write",
                 "member-add", "member-remove", "drain", "restore", "reload"]
PHASES = ("certificates", "etcd", "server", "ingress", "rolling", "remove", "lb", "kubeconfig",
          "outputs")
SERVICE_PHASES = ("etcd", "server", "ingress", "lb")
TITLES = {
    "etcd": "etcd member",
    "server": "corral server",
    "ingress": "corral ingress",
    "lb": "corral lb (external load balancer)",
}


@dataclass(frozen=True, slots=True)
class NodeProbe:
    """What the live probes found on a node: is its supervisor running, and each service's
    health (name → (healthy, detail))."""

    supervisor: bool
    services: Mapping[str, tuple[bool, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DesiredNode:
    """A node (or the load balancer) as this run wants it: service name → digest, in phase
    order."""

    name: str
    services: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PlanInput:
    """Everything the plan is made from."""

    nodes: Sequence[DesiredNode]
    recorded: Mapping[str, NodeState]
    probes: Mapping[str, NodeProbe]
    certificates: Sequence[str] = ()  # names of certificates to issue ("ca" first if any)
    outputs: Mapping[str, str] = field(default_factory=dict)  # file name → "new"/"changed"
    token_problem: str = ""  # why an admin token must be obtained; "" = the recorded one works
    problems: Sequence[str] = ()  # what stops the run (provider checks, unsupported changes)
    rolling: bool = False  # a running cluster: changes go node by node (drain, change, restore)
    lb_endpoints: Mapping[str, str] = field(default_factory=dict)  # node → its endpoint in the
    # running corral lb (nodes without one are not drained)
    etcd_joins: Sequence[str] = ()  # nodes whose member joins the running etcd cluster
    etcd_leaves: Sequence[str] = ()  # removed nodes whose member leaves it
    lb_reload: str = ""  # why the running corral lb reloads its configuration ("" = it does not)


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the apply does (or, for `keep`, leaves as it is)."""

    phase: str
    action: Action
    node: str = ""
    service: str = ""
    reason: str = ""

    def line(self) -> str:
        """The step as the plan prints it."""
        what = TITLES.get(self.service, self.service)
        where = f"node [{self.node}] " if self.node and self.node != LB_NODE else ""
        reason = f" ({self.reason})" if self.reason else ""
        return f"[{self.phase}] {where}{self.action} {what}{reason}"


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered steps and the problems that stop the run."""

    steps: tuple[Step, ...]
    problems: tuple[str, ...] = ()
    rolling: bool = False  # the changes of running nodes go node by node (`rolling` steps)

    @property
    def changes(self) -> tuple[Step, ...]:
        """The steps that do something (all but `keep`)."""
        return tuple(step for step in self.steps if step.action != "keep")

    @property
    def service_changes(self) -> tuple[Step, ...]:
        """The changes to services (create, change, start, remove)."""
        return tuple(s for s in self.changes if s.action in ("create", "change", "start", "remove"))

    def in_phase(self, phase: str) -> tuple[Step, ...]:
        """The steps of `phase`, in order."""
        return tuple(step for step in self.steps if step.phase == phase)

    def counts(self) -> dict[str, int]:
        """How many steps of each service action (create/change/start/remove/keep)."""
        result = dict.fromkeys(("create", "change", "start", "remove", "keep"), 0)
        for step in self.steps:
            if step.action in result and step.service:
                result[step.action] += 1
        return result

    def summary(self) -> str:
        """One line: what the plan changes, or that it changes nothing."""
        counts = self.counts()
        if not self.changes:
            return f"Nothing to change: {counts['keep']} services run as the cluster file asks"
        parts = [f"{counts[a]} to {a}" for a in ("create", "change", "start", "remove")]
        extra = len(self.changes) - sum(counts[a] for a in ("create", "change", "start", "remove"))
        tail = f", {extra} other step(s)" if extra else ""
        return f"Plan: {', '.join(parts)}, {counts['keep']} unchanged{tail}"

    def render(self) -> list[str]:
        """The plan as printed by `--dry-run`: every step, then the summary."""
        lines = [f"problem: {p}" for p in self.problems]
        lines += [step.line() for step in self.steps]
        lines.append(self.summary())
        return lines


def _service_step(
    phase: str, node: str, digest: str, recorded: NodeState | None, probe: NodeProbe | None
) -> Step:
    old = recorded.services.get(phase) if recorded is not None else None
    if old is None:
        return Step(phase, "create", node, phase, "new")
    if old != digest:
        return Step(phase, "change", node, phase, "its command line, environment or files changed")
    if probe is None or not probe.supervisor:
        return Step(phase, "start", node, phase, "the node's supervisor is not running")
    healthy, detail = probe.services.get(phase, (False, "not probed"))
    if not healthy:
        return Step(phase, "start", node, phase, f"not healthy: {detail}")
    return Step(phase, "keep", node, phase, "running, healthy")


def etcd_membership_problem(
    recorded_members: Sequence[str], desired_members: Sequence[str], etcd_ever_started: bool
) -> str:
    """Why the etcd members cannot change this way ("" when they can): members join and leave
    a running etcd cluster one at a time, so at least one member must stay (the others join
    it); moving the role to other nodes all at once, or dropping it, is refused."""
    if not etcd_ever_started or list(recorded_members) == list(desired_members):
        return ""
    if set(recorded_members) & set(desired_members):
        return ""
    return (
        f"the etcd role moves from nodes {', '.join(recorded_members) or 'none'} to "
        f"{', '.join(desired_members) or 'none'} all at once: a running etcd cluster changes "
        "its members one at a time and keeps its data only while one of them stays; keep at "
        "least one of the current etcd nodes in this run (move the others in later runs), or "
        "run `corral remove` and build the cluster again"
    )


def _rolling_steps(given: PlanInput, changes: Sequence[Step]) -> list[Step]:
    """The changes of running nodes, node by node: drain, its changes, restore."""
    steps: list[Step] = []
    nodes = list(dict.fromkeys(step.node for step in changes))
    for node in nodes:
        endpoint = given.lb_endpoints.get(node, "") if node != LB_NODE else ""
        if endpoint:
            steps.append(Step("rolling", "drain", node, f"lb endpoint {endpoint}",
                              "out of the load balancer while its services restart"))
        steps += [step for step in changes if step.node == node]
        if endpoint:
            steps.append(Step("rolling", "restore", node, f"lb endpoint {endpoint}",
                              "back into the load balancer once healthy"))
    return steps


def make_plan(given: PlanInput) -> Plan:
    """The plan for `given` (pure)."""
    steps: list[Step] = []
    for name in given.certificates:
        what = "the cluster CA" if name == "ca" else f"certificate {name}"
        steps.append(Step("certificates", "issue", service=what, reason="from the cluster CA"
                          if name != "ca" else "new cluster"))
    desired_names = {node.name for node in given.nodes}
    changes: list[Step] = []
    lb_steps: list[Step] = []
    for phase in SERVICE_PHASES:
        for node in given.nodes:
            if phase in node.services:
                recorded = given.recorded.get(node.name)
                probe = given.probes.get(node.name)
                step = _service_step(phase, node.name, node.services[phase], recorded, probe)
                if phase == "etcd" and node.name in given.etcd_joins:
                    steps.append(Step("etcd", "member-add", node.name, f"etcd-{node.name}",
                                      "joins the running etcd cluster; its member then starts "
                                      "with --initial-cluster-state=existing"))
                if given.rolling and step.action == "change" and node.name != LB_NODE:
                    changes.append(step)
                elif node.name == LB_NODE:
                    lb_steps.append(step)
                else:
                    steps.append(step)
    if given.lb_reload:
        steps.append(Step("lb", "reload", service="lb", reason=given.lb_reload))
    steps += _rolling_steps(given, changes) if given.rolling else []
    for node in given.nodes:  # services a node no longer carries
        recorded = given.recorded.get(node.name)
        for service in recorded.services if recorded else ():
            if service not in node.services:
                steps.append(Step("remove", "remove", node.name, service, "role removed"))
    for name, recorded in sorted(given.recorded.items()):
        if name not in desired_names:
            if name in given.etcd_leaves:  # (the lb's reload above took it out already)
                steps.append(Step("remove", "member-remove", name, f"etcd-{name}",
                                  "leaves the etcd cluster before its services stop"))
            for service in reversed(list(recorded.services)):
                steps.append(Step("remove", "remove", name, service, "node removed"))
            if not recorded.services:
                steps.append(Step("remove", "remove", name, "node", "node removed"))
    steps += lb_steps
    if given.token_problem:
        steps.append(Step("kubeconfig", "login", service="admin API token",
                          reason=given.token_problem))
    for file_name, why in given.outputs.items():
        steps.append(Step("outputs", "write", service=file_name, reason=why))
    return Plan(tuple(steps), tuple(given.problems), given.rolling)
