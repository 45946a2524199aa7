"""The plan of `corral up`: desired services against the state file and live probes."""

from __future__ import annotations

import pytest

from corral.install.plan import (
    DesiredNode,
    NodeProbe,
    PlanInput,
    Step,
    etcd_membership_problem,
    make_plan,
)
from corral.install.state import LB_NODE, NodeState

SERVICES = {"etcd": "e1", "server": "s1", "ingress": "i1"}
HEALTHY = NodeProbe(True, {name: (True, "ok") for name in SERVICES})


def recorded(name: str, services: dict[str, str] | None = None) -> NodeState:
    """A node as the state file records it."""
    return NodeState(name, "127.0.77.1", "127.0.77.1", ("controlplane", "etcd", "worker"),
                     dict(SERVICES if services is None else services))


def plan_for(
    nodes: dict[str, dict[str, str]],
    state: dict[str, NodeState],
    probes: dict[str, NodeProbe],
    **extra: object,
) -> tuple[Step, ...]:
    """The steps of the plan for these inputs."""
    given = PlanInput(
        nodes=[DesiredNode(n, s) for n, s in nodes.items()],
        recorded=state,
        probes=probes,
        **extra,  # type: ignore[arg-type]
    )
    return make_plan(given).steps


def actions(steps: tuple[Step, ...]) -> list[tuple[str, str, str]]:
    """(phase, node, action) of each step."""
    return [(s.phase, s.node, s.action) for s in steps]


def test_a_new_cluster_creates_every_service_in_phase_order() -> None:
    """Nothing recorded: every service is created, etcd on all nodes before any server."""
    steps = plan_for({"a": SERVICES, "b": SERVICES}, {}, {})
    assert actions(steps) == [
        ("etcd", "a", "create"), ("etcd", "b", "create"),
        ("server", "a", "create"), ("server", "b", "create"),
        ("ingress", "a", "create"), ("ingress", "b", "create"),
    ]


def test_a_running_cluster_as_recorded_is_kept_and_the_plan_says_nothing_changes() -> None:
    """Same digests, supervisor up, probes healthy: only `keep` steps, summary says so."""
    given = PlanInput([DesiredNode("a", SERVICES)], {"a": recorded("a")}, {"a": HEALTHY})
    plan = make_plan(given)
    assert {s.action for s in plan.steps} == {"keep"}
    assert plan.changes == ()
    assert plan.summary().startswith("Nothing to change: 3 services")


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (NodeProbe(False, {}), "the node's supervisor is not running"),
        (NodeProbe(True, {"etcd": (False, "connection refused"), "server": (True, "ok"),
                          "ingress": (True, "ok")}), "not healthy: connection refused"),
    ],
)
def test_a_recorded_service_that_is_down_is_started(probe: NodeProbe, reason: str) -> None:
    """A dead supervisor starts all the node's services; an unhealthy service just itself."""
    steps = plan_for({"a": SERVICES}, {"a": recorded("a")}, {"a": probe})
    etcd = next(s for s in steps if s.phase == "etcd")
    assert (etcd.action, etcd.reason) == ("start", reason)


def test_a_changed_digest_changes_only_that_service() -> None:
    """A new server digest changes the server; etcd and ingress are kept."""
    steps = plan_for({"a": {**SERVICES, "server": "s2"}}, {"a": recorded("a")}, {"a": HEALTHY})
    assert actions(steps) == [("etcd", "a", "keep"), ("server", "a", "change"),
                              ("ingress", "a", "keep")]


def test_a_node_gone_from_the_file_is_removed_service_by_service_last_first() -> None:
    """A recorded node the file no longer lists: remove steps, ingress first, etcd last."""
    steps = plan_for({"a": SERVICES}, {"a": recorded("a"), "b": recorded("b")},
                     {"a": HEALTHY, "b": HEALTHY})
    removed = [(s.node, s.service) for s in steps if s.action == "remove"]
    assert removed == [("b", "ingress"), ("b", "server"), ("b", "etcd")]


def test_a_role_dropped_from_a_node_removes_its_service() -> None:
    """A node that no longer has the worker role loses its ingress only."""
    steps = plan_for({"a": {"etcd": "e1", "server": "s1"}}, {"a": recorded("a")},
                     {"a": HEALTHY})
    assert [(s.service, s.action) for s in steps if s.action != "keep"] == [
        ("ingress", "remove")
    ]


def test_certificates_token_and_outputs_come_in_their_phases() -> None:
    """Certificates first, then services, then the token and the files to write."""
    steps = plan_for({"a": SERVICES}, {"a": recorded("a")}, {"a": HEALTHY},
                     certificates=["ca", "lb"], outputs={"x.lb.yml": "new"},
                     token_problem="none recorded yet")
    phases = [s.phase for s in steps if s.action != "keep"]
    assert phases == ["certificates", "certificates", "kubeconfig", "outputs"]
    assert steps[0].line() == "[certificates] issue the cluster CA (new cluster)"


def test_the_load_balancer_is_planned_after_the_nodes_without_a_node_label() -> None:
    """The external lb is a service of its own, last, printed without `node [...]`."""
    steps = plan_for({"a": SERVICES, LB_NODE: {"lb": "l1"}}, {}, {})
    assert steps[-1].phase == "lb"
    assert steps[-1].line() == "[lb] create corral lb (external load balancer) (new)"
    assert steps[0].line() == "[etcd] node [a] create etcd member (new)"


def test_problems_are_printed_first_and_kept_on_the_plan() -> None:
    """A problem (from the provider or the etcd members) is part of the printed plan."""
    given = PlanInput([DesiredNode("a", SERVICES)], {}, {}, problems=["node a: bad address"])
    plan = make_plan(given)
    assert plan.problems == ("node a: bad address",)
    assert plan.render()[0] == "problem: node a: bad address"
    assert plan.render()[-1].startswith("Plan: 3 to create, 0 to change")


@pytest.mark.parametrize(
    ("recorded_members", "desired_members", "ever", "refused"),
    [
        (("a", "b", "c"), ("a", "b", "c"), True, False),
        (("a", "b", "c"), ("a", "b", "d"), True, False),  # c leaves, d joins: one at a time
        (("a", "b", "c"), ("d", "e", "f"), True, True),  # all at once: nothing keeps the data
        (("a", "b", "c"), (), True, True),  # the etcd role dropped
        (("a", "b", "c"), ("d", "e", "f"), False, False),  # never ran: may still change
        ((), ("a",), False, False),
    ],
)
def test_etcd_members_of_a_cluster_that_ran_cannot_change(
    recorded_members: tuple[str, ...], desired_members: tuple[str, ...], ever: bool,
    refused: bool,
) -> None:
    """Members join and leave a cluster that ran one at a time (one must stay); moving the
    etcd role all at once after etcd ran is refused with the way out; before, allowed."""
    problem = etcd_membership_problem(recorded_members, desired_members, ever)
    assert bool(problem) is refused
    if refused:
        assert "corral remove" in problem
