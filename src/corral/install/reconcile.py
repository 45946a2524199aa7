"""What a re-run on a running cluster adds to the plan: the etcd members as the live cluster
has them (`member list`), the flags each member was started with, the members that join and
leave, the load balancer endpoints of the nodes (so changes can be rolled node by node) and
whether the running `corral lb` must reload its configuration.

`reconcile(prepared)` takes what `corral.install.prepare` made and returns it with its
services (the etcd members' `--initial-cluster` flags) and plan redone; it reads only (one
`etcdctl member list`), so `--dry-run` shows exactly the plan the run carries out.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import yaml

from corral.install.etcd_members import EtcdClient, MemberError
from corral.install.ingress_file import INGRESS_PORT
from corral.install.outputs import lb_config_path
from corral.install.plan import DesiredNode, PlanInput, make_plan
from corral.install.prepare import Prepared
from corral.install.services import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    member_name,
    node_services,
)
from corral.install.state import LB_NODE, ClusterState, NodeState

MEMBER_PREFIX = "etcd-"


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _address(prepared: Prepared, name: str) -> str:
    """The internal address of node `name`: the cluster file's, else the state's."""
    node = prepared.nodes.get(name)
    if node is not None:
        return node.internal_address
    recorded = prepared.state.nodes.get(name)
    return recorded.internal_address if recorded else ""


def peer_url(prepared: Prepared, name: str) -> str:
    """The etcd peer URL of node `name`."""
    return f"https://{_host(_address(prepared, name))}:{ETCD_PEER_PORT}"


def client_url(prepared: Prepared, name: str) -> str:
    """The etcd client URL of node `name`."""
    return f"https://{_host(_address(prepared, name))}:{ETCD_CLIENT_PORT}"


def etcd_client(prepared: Prepared, members: tuple[str, ...]) -> EtcdClient | None:
    """etcdctl's view of the cluster through `members`, with a member node's client
    certificate (this machine's copy of it); None when no member is left to ask."""
    if not members:
        return None
    provider = prepared.provider
    paths = provider.node_paths(members[0])
    local = provider.local_path
    return EtcdClient(
        tuple(client_url(prepared, m) for m in members),
        local(paths, str(paths.file(CA_FILE))),
        local(paths, str(paths.file(CLIENT_CERT))),
        local(paths, str(paths.file(CLIENT_KEY))),
    )


def live_members(prepared: Prepared, members: tuple[str, ...]) -> tuple[str, ...] | None:
    """The node names of the started members of the running cluster, in the state's order
    first (None when the cluster does not answer: the state's list stands)."""
    client = etcd_client(prepared, members)
    if client is None:
        return None
    try:
        found = client.members()
    except (MemberError, ValueError):
        return None
    names = [m.name[len(MEMBER_PREFIX):] for m in found if m.name.startswith(MEMBER_PREFIX)]
    ordered = [n for n in members if n in names] + sorted(n for n in names if n not in members)
    return tuple(ordered)


def initial_flags(prepared: Prepared, members: tuple[str, ...], joining: str = "") -> str:
    """`--initial-cluster` for `members` (and a member `joining` them)."""
    names = [*members, *([joining] if joining and joining not in members else [])]
    return ",".join(f"{member_name(n)}={peer_url(prepared, n)}" for n in names)


def lb_endpoint(prepared: Prepared, name: str) -> str:
    """host:port of node `name`'s ingress in the external load balancer ("" without one)."""
    node = prepared.nodes.get(name)
    if node is not None:
        return prepared.provider.ingress_endpoint(node) if node.has("worker") else ""
    recorded = prepared.state.nodes.get(name)
    if recorded is None or "ingress" not in recorded.services:
        return ""
    return f"{_host(recorded.address)}:{INGRESS_PORT}"


def lb_servers(text: str) -> list[str]:
    """The endpoints of a `<stem>.lb.yml` (empty when it cannot be read)."""
    with contextlib.suppress(yaml.YAMLError, AttributeError, KeyError, TypeError):
        data = yaml.safe_load(text)
        return [str(s) for s in data["upstreams"]["rancher"]["servers"]]
    return []


def _lb_reload(prepared: Prepared, running: bool) -> str:
    """Why the running lb reloads ("" when it does not): the endpoints its file gains/loses."""
    if not running or prepared.desired.load_balancer is None:
        return ""
    path = lb_config_path(prepared.desired)
    new = next(o.content for o in prepared.outputs if o.path == path).decode()
    try:
        old = path.read_text()
    except OSError:
        old = ""
    if old == new:
        return ""
    before, after = lb_servers(old), lb_servers(new)
    moves = [f"+{e}" for e in after if e not in before] + [f"-{e}" for e in before
                                                           if e not in after]
    return ("its configuration changes: " + ", ".join(moves)) if moves else (
        f"{path.name} changed")


def _state_initial(prepared: Prepared, state: ClusterState) -> dict[str, tuple[str, str]]:
    """Every member's start flags: recorded, else (a state written before members could
    change) the original members' `new` cluster."""
    initial = dict(state.etcd_initial)
    original = initial_flags(prepared, state.etcd_members)
    for name, node in state.nodes.items():
        if "etcd" in node.services and name not in initial:
            initial[name] = (original, "new")
    return initial


def reconcile(prepared: Prepared) -> Prepared:
    """`prepared` with the etcd members' flags and the reconcile plan (see the module)."""
    if prepared.plan.problems or not prepared.services:
        return prepared
    state = prepared.state
    ever = any("etcd" in n.services for n in state.nodes.values())
    desired_etcd = tuple(n.name for n in prepared.desired.nodes_with("etcd"))
    members = state.etcd_members if ever else desired_etcd
    if ever:
        members = live_members(prepared, members) or members
    initial = _state_initial(prepared, replace(state, etcd_members=members)) if ever else {}
    joins = tuple(n for n in desired_etcd if ever and n not in members)
    for name in joins:
        initial[name] = (initial_flags(prepared, members, name), "existing")
    leaves = tuple(n for n in members if ever and n not in desired_etcd)
    state = replace(state, etcd_members=members, etcd_initial=initial)
    ctx = replace(prepared.ctx, etcd_members=members, etcd_initial=initial)
    services = dict(prepared.services)
    for node in prepared.desired.nodes:
        services[node.name] = node_services(ctx, node)
    lb_running = prepared.probes.get(LB_NODE) is not None and "lb" in state.nodes.get(
        LB_NODE, NodeState(LB_NODE, "", "", ())).services and prepared.probes[LB_NODE].supervisor
    names = [*prepared.nodes, *(n for n in state.nodes if n not in prepared.nodes)]
    endpoints = {n: e for n in names if n != LB_NODE and (e := lb_endpoint(prepared, n))}
    old = prepared.plan
    prepared.state, prepared.ctx, prepared.services = state, ctx, services
    prepared.plan = make_plan(PlanInput(
        nodes=[DesiredNode(name, {s.name: s.digest for s in specs})
               for name, specs in services.items()],
        recorded=state.nodes,
        probes=prepared.probes,
        certificates=prepared.pki_changes,
        outputs={s.service: s.reason for s in old.in_phase("outputs")},
        token_problem=next((s.reason for s in old.in_phase("kubeconfig")), ""),
        problems=old.problems,
        rolling=ever,
        lb_endpoints=endpoints if lb_running else {},
        etcd_joins=joins,
        etcd_leaves=leaves,
        lb_reload=_lb_reload(prepared, lb_running),
    ))
    return prepared

