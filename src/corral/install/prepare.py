"""Everything `corral up` knows before it acts: the desired cluster, the recorded state, the
cluster PKI, every node's services, the output files, and the live probes; and from these the
plan. Reads only (the probes are GETs and TCP connects): `--dry-run` stops here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.install.cluster_pki import ClusterPki, ensure_pki
from corral.install.desired import DesiredCluster, NodeSpec
from corral.install.kubeconfig import HTTPS_PORT, kubeconfig_path, kubeconfig_yaml, server_url
from corral.install.outputs import (
    PLACEHOLDER_CERT,
    PLACEHOLDER_KEY,
    LbCertificate,
    LbListeners,
    lb_config_path,
    lb_yaml,
    nginx_conf,
    nginx_config_path,
)
from corral.install.plan import (
    DesiredNode,
    NodeProbe,
    Plan,
    PlanInput,
    etcd_membership_problem,
    make_plan,
)
from corral.install.probes import settled_checks
from corral.install.progress import Progress
from corral.install.providers import Provider, ProviderError, provider_for
from corral.install.providers.base import NodePaths, NodeProblem
from corral.install.services import (
    LB_CERT_FILE,
    LB_KEY_FILE,
    HealthProbe,
    ServiceContext,
    ServiceSpec,
    lb_address,
    lb_service,
    node_services,
    published_cacerts,
)
from corral.install.state import LB_NODE, ClusterState, load_state, new_state, state_path

BASE_DIR_SUFFIX = ".corral"


@dataclass(frozen=True)
class Output:
    """A file `corral up` writes beside the cluster file."""

    path: Path
    content: bytes
    mode: int


@dataclass
class Prepared:
    """The inputs of one run and its plan."""

    desired: DesiredCluster
    provider: Provider
    state: ClusterState  # the recorded state, or a new one not yet saved
    fresh: bool  # no state file existed
    pki_changes: list[str]
    ctx: ServiceContext
    services: dict[str, tuple[ServiceSpec, ...]]  # node (or LB_NODE) → its services
    nodes: dict[str, NodeSpec]
    outputs: list[Output]  # lb.yml and nginx.conf (the kubeconfig comes after the token)
    probes: dict[str, NodeProbe]
    plan: Plan
    preflight: list[NodeProblem] = field(default_factory=list)  # what stops the nodes

    @property
    def state_file(self) -> Path:
        """`<stem>.corralstate`."""
        return state_path(self.desired)

    def kubeconfig(self, token: str) -> Output:
        """`kube_config_<stem>.yml` with `token`."""
        ca_pem, _ = published_cacerts(self.ctx)
        text = kubeconfig_yaml(self.desired.cluster_name, self.ctx.server_url, ca_pem, token)
        return Output(kubeconfig_path(self.desired), text.encode(), 0o600)


def default_base_dir(desired: DesiredCluster) -> Path:
    """`<stem>.corral/` beside the cluster file."""
    return desired.source.with_name(desired.stem + BASE_DIR_SUFFIX)


def choose_base_dir(
    desired: DesiredCluster, recorded: ClusterState | None, given: Path | None
) -> tuple[Path, str]:
    """The base directory of the node directories, and a problem ("" none): a cluster keeps
    the one it was built with."""
    if recorded is None:
        return (given or default_base_dir(desired)).resolve(), ""
    built = Path(recorded.base_dir)
    if given is not None and given.resolve() != built:
        return built, (
            f"the cluster was built with its node directories in {built}: pass "
            f"--state-dir {built} (or leave --state-dir out)"
        )
    return built, ""


def lb_listeners(desired: DesiredCluster) -> LbListeners:
    """Where the external load balancer listens (Rancher's 443 and 80 without `load_balancer`)."""
    spec = desired.load_balancer
    if spec is None:
        return LbListeners(("", HTTPS_PORT), ("", 80))
    https = lb_address(spec.listen)
    http = lb_address(spec.http_listen) if spec.http_listen else None
    return LbListeners(https, http)


def lb_certificate(desired: DesiredCluster, provider: Provider) -> LbCertificate:
    """The certificate paths the load balancer serves."""
    spec = desired.load_balancer
    root = provider.lb_paths().root
    if spec is not None and spec.generate:
        return LbCertificate(str(root / LB_CERT_FILE), str(root / LB_KEY_FILE))
    if spec is not None and spec.cert_file is not None and spec.key_file is not None:
        return LbCertificate(str(spec.cert_file), str(spec.key_file))
    return LbCertificate(PLACEHOLDER_CERT, PLACEHOLDER_KEY, placeholder=True)


def _output_changes(outputs: list[Output]) -> dict[str, str]:
    changes: dict[str, str] = {}
    for output in outputs:
        try:
            same = output.path.read_bytes() == output.content
        except FileNotFoundError:
            changes[output.path.name] = "new"
            continue
        except OSError:
            same = False
        if not same:
            changes[output.path.name] = "changed"
    return changes


def probe_for(provider: Provider, paths: NodePaths, probe: HealthProbe) -> HealthProbe:
    """`probe` as this machine runs it: the files it names where this machine has them."""
    local = provider.local_path
    return replace(probe, cafile=local(paths, probe.cafile) if probe.cafile else "",
                   certfile=local(paths, probe.certfile) if probe.certfile else "",
                   keyfile=local(paths, probe.keyfile) if probe.keyfile else "")


async def probe_nodes(
    provider: Provider, services: dict[str, tuple[ServiceSpec, ...]], extra: list[str],
    unreachable: frozenset[str] = frozenset(),
) -> dict[str, NodeProbe]:
    """The live state of every node: its supervisor, and each service's health probe (a node
    in `unreachable` is down without asking it)."""

    async def one(name: str, specs: tuple[ServiceSpec, ...]) -> NodeProbe:
        if name in unreachable:
            return NodeProbe(False, {s.name: (False, "node unreachable") for s in specs})
        paths = provider.lb_paths() if name == LB_NODE else provider.node_paths(name)
        try:
            running = await asyncio.to_thread(provider.supervisor_running, paths)
        except ProviderError as exc:
            return NodeProbe(False, {s.name: (False, str(exc)) for s in specs})
        probes = [probe_for(provider, paths, spec.health) for spec in specs]
        # a running node's unhealthy service is asked again for a moment (etcd members answer
        # unhealthy while they elect a new leader): the plan restarts only what stays down
        results = await settled_checks(probes, again=running)
        return NodeProbe(running, {s.name: r for s, r in zip(specs, results, strict=True)})

    names = list(services) + [n for n in extra if n not in services]
    found = await asyncio.gather(*(one(n, services.get(n, ())) for n in names))
    return dict(zip(names, found, strict=True))


def prepare(
    desired: DesiredCluster, state_dir: Path | None = None, progress: Progress | None = None
) -> Prepared:
    """Read the state, check the nodes (preflight), build every service, probe the nodes and
    make the plan. The caller closes `Prepared.provider` when done."""
    recorded = load_state(state_path(desired))
    base_dir, base_problem = choose_base_dir(desired, recorded, state_dir)
    provider = provider_for(desired, base_dir)
    try:
        return _prepare(desired, provider, recorded, base_dir, base_problem,
                        progress or Progress())
    except BaseException:
        provider.close()
        raise


def _prepare(
    desired: DesiredCluster, provider: Provider, recorded: ClusterState | None, base_dir: Path,
    base_problem: str, progress: Progress,
) -> Prepared:
    problems = [base_problem] if base_problem else []
    for node in desired.nodes:
        problems += provider.check_node(node)
        if node.name == LB_NODE:
            problems.append(f"node {node.name}: the name {LB_NODE} is Corral's own; rename it")
    preflight = provider.preflight(desired, progress) if not problems else []
    unreachable = frozenset(p.node for p in preflight)
    listeners = lb_listeners(desired)
    recorded_pki: ClusterPki | None = recorded.pki if recorded else None
    pki, pki_changes = ensure_pki(desired, recorded_pki, lb_host=listeners.https[0])
    state = replace(recorded, pki=pki) if recorded else new_state(desired, pki, base_dir)
    etcd_names = tuple(n.name for n in desired.nodes_with("etcd"))
    ever = any("etcd" in n.services for n in state.nodes.values())
    members = state.etcd_members if ever and state.etcd_members else etcd_names
    membership = etcd_membership_problem(members, etcd_names, ever)
    if membership:
        problems.append(membership)
    state = replace(state, etcd_members=members)
    port = listeners.https[1] if desired.load_balancer else HTTPS_PORT
    ctx = ServiceContext(
        desired=desired,
        pki=pki,
        paths=provider.node_paths,
        admin_password=state.admin_password,
        etcd_token=state.etcd_token,
        etcd_members=members if not membership else etcd_names,
        trusted_proxies=provider.trusted_proxies(desired),
        server_url=server_url(desired.fqdn, port),
        lb_root=provider.lb_paths().root,
        corral=provider.corral_command(),
        etcd_binary=provider.etcd_binary(),
    )
    endpoints = [provider.ingress_endpoint(n) for n in desired.nodes_with("worker")]
    certificate = lb_certificate(desired, provider)
    lb_text = lb_yaml(desired, endpoints, listeners, certificate).encode()
    outputs = [
        Output(lb_config_path(desired), lb_text, 0o644),
        Output(nginx_config_path(desired), nginx_conf(desired, endpoints, listeners,
                                                      certificate).encode(), 0o644),
    ]
    services: dict[str, tuple[ServiceSpec, ...]] = {}
    if not problems:
        services = {node.name: node_services(ctx, node) for node in desired.nodes}
        if desired.load_balancer is not None:
            services[LB_NODE] = (lb_service(ctx, lb_config_path(desired), lb_text),)
    probes = asyncio.run(probe_nodes(provider, services, list(state.nodes), unreachable))
    prepared = Prepared(
        desired, provider, state, recorded is None, pki_changes, ctx, services,
        {n.name: n for n in desired.nodes}, outputs, probes, Plan(()), preflight,
    )
    changes = _output_changes([*outputs, prepared.kubeconfig(state.admin_token)])
    prepared.plan = make_plan(PlanInput(
        nodes=[DesiredNode(name, {s.name: s.digest for s in specs})
               for name, specs in services.items()],
        recorded=state.nodes,
        probes=probes,
        certificates=pki_changes,
        outputs=changes,
        token_problem="" if state.admin_token else "none recorded yet",
        problems=problems,
    ))
    return prepared
