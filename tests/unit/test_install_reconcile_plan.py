"""The reconcile plan of a running cluster: members joining and leaving, the lb reload, the
node-by-node rollout; and the pure helpers behind it."""

from __future__ import annotations

import pytest

from corral.install.etcd_members import Member, initial_cluster
from corral.install.plan import (
    DesiredNode,
    NodeProbe,
    PlanInput,
    etcd_membership_problem,
    make_plan,
)
from corral.install.reconcile import lb_servers
from corral.install.state import LB_NODE, NodeState

SERVICES = {"etcd": "e1", "server": "s1", "ingress": "i1"}
HEALTHY = NodeProbe(True, {name: (True, "ok") for name in (*SERVICES, "lb")})
ENDPOINTS = {n: f"127.0.77.{n[-1]}:80" for n in ("a1", "b2", "c3", "d4")}


def recorded(name: str, services: dict[str, str] | None = None) -> NodeState:
    """A node as the state file records it."""
    return NodeState(name, "127.0.77.1", "127.0.77.1", ("controlplane", "etcd", "worker"),
                     dict(SERVICES if services is None else services))


def lines(nodes: dict[str, dict[str, str]], state: dict[str, NodeState],
          **extra: object) -> list[str]:
    """The printed plan of a running cluster (every node probed healthy)."""
    given = PlanInput(
        nodes=[DesiredNode(n, s) for n, s in nodes.items()], recorded=state,
        probes={n: HEALTHY for n in [*nodes, *state]}, rolling=True, lb_endpoints=ENDPOINTS,
        **extra,  # type: ignore[arg-type]
    )
    return make_plan(given).render()


def test_changes_of_running_nodes_are_rolled_one_node_at_a_time() -> None:
    """Two nodes with a new server: node a1 drained, changed, restored, then node b2."""
    changed = {**SERVICES, "server": "s2"}
    plan = lines({"a1": changed, "b2": changed}, {"a1": recorded("a1"), "b2": recorded("b2")})
    rolled = [line.split(" (")[0] for line in plan if line.startswith(("[rolling]", "[server]"))]
    assert rolled == [
        "[rolling] node [a1] drain lb endpoint 127.0.77.1:80",
        "[server] node [a1] change corral server",
        "[rolling] node [a1] restore lb endpoint 127.0.77.1:80",
        "[rolling] node [b2] drain lb endpoint 127.0.77.2:80",
        "[server] node [b2] change corral server",
        "[rolling] node [b2] restore lb endpoint 127.0.77.2:80",
    ]
    assert plan[-1].startswith("Plan: 0 to create, 2 to change")


def test_a_joining_member_is_added_before_it_starts_and_the_lb_reloads_after_its_ingress() -> None:
    """A new etcd node: member-add right before its etcd is created; the lb's reload comes
    after every new service, before the rollout."""
    plan = lines({"a1": SERVICES, "d4": SERVICES}, {"a1": recorded("a1")},
                 etcd_joins=["d4"], lb_reload="its configuration changes: +127.0.77.4:80")
    heads = [line.split(" (")[0] for line in plan]
    assert heads.index("[etcd] node [d4] member-add etcd-d4") + 1 == heads.index(
        "[etcd] node [d4] create etcd member")
    assert heads.index("[ingress] node [d4] create corral ingress") < heads.index(
        "[lb] reload corral lb")


def test_a_leaving_member_is_removed_before_its_services() -> None:
    """A removed etcd node: member-remove first, then its services; the lb's own steps come
    after the removals."""
    state = {"a1": recorded("a1"), "c3": recorded("c3"), LB_NODE: recorded(LB_NODE, {"lb": "l"})}
    plan = lines({"a1": SERVICES, LB_NODE: {"lb": "l"}}, state, etcd_leaves=["c3"])
    heads = [line.split(" (")[0] for line in plan]
    remove = [h for h in heads if h.startswith("[remove]")]
    assert remove[0] == "[remove] node [c3] member-remove etcd-c3"
    assert len(remove) == 4
    assert heads.index(remove[-1]) < heads.index("[lb] keep corral lb")


def test_a_cluster_that_never_ran_keeps_changes_in_their_phase() -> None:
    """Without `rolling` (nothing ran yet) no drain/restore steps are planned."""
    given = PlanInput([DesiredNode("a1", {**SERVICES, "server": "s2"})],
                      {"a1": recorded("a1")}, {"a1": HEALTHY}, lb_endpoints=ENDPOINTS)
    assert [s.action for s in make_plan(given).steps] == ["keep", "change", "keep"]


@pytest.mark.parametrize(
    ("recorded_members", "desired_members", "refused"),
    [
        (("a", "b", "c"), ("a", "b", "d"), False),  # one joins, one leaves: one at a time
        (("a", "b", "c"), ("a", "b", "c", "d"), False),
        (("a", "b", "c"), ("d", "e", "f"), True),  # no member stays: the data would be lost
        (("a",), (), True),
    ],
)
def test_members_change_while_one_stays(
    recorded_members: tuple[str, ...], desired_members: tuple[str, ...], refused: bool,
) -> None:
    """A running etcd cluster may gain and lose members as long as one of them stays."""
    problem = etcd_membership_problem(recorded_members, desired_members, True)
    assert bool(problem) is refused
    if refused:
        assert "corral remove" in problem and "one at a time" in problem


def test_initial_cluster_names_every_started_member_and_the_joining_one() -> None:
    """member list → --initial-cluster: the started members by name, the new one (listed
    without a name once added) by the name it will have."""
    members = [Member(1, "etcd-a", ("https://127.0.77.1:2380",), ()),
               Member(2, "", ("https://127.0.77.4:2380",), ())]
    assert initial_cluster(members, "etcd-d", "https://127.0.77.4:2380") == (
        "etcd-a=https://127.0.77.1:2380,etcd-d=https://127.0.77.4:2380")
    assert initial_cluster(members[:1], "etcd-d", "https://127.0.77.4:2380") == (
        "etcd-a=https://127.0.77.1:2380,etcd-d=https://127.0.77.4:2380")
    assert Member(255, "x", (), ()).hex_id == "ff"


def test_lb_servers_reads_the_endpoints_of_an_lb_file() -> None:
    """The endpoints of `<stem>.lb.yml`'s upstream, or none for a file that is not one."""
    text = "upstreams:\n  rancher:\n    servers:\n      - 127.0.77.1:80\n      - 127.0.77.2:80\n"
    assert lb_servers(text) == ["127.0.77.1:80", "127.0.77.2:80"]
    assert lb_servers("not: [an lb file") == []
    assert lb_servers("") == []
