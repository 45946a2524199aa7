"""Carrying out the plan, phase by phase, in RKE's order: certificates, etcd, server, ingress,
the load balancer's new configuration, the changes of running nodes node by node, removals,
the external load balancer, the kubeconfig token, the output files, a final health check.

In a phase, services to create or start are launched on every node at once (a new etcd cluster
needs all its members), then waited on until their probes pass; an etcd member that joins a
running cluster is added (`etcdctl member add`) and started alone. The changes of running
nodes are rolled out one node at a time through `corral.install.rolling` (out of the load
balancer, restarted, healthy, back in), so the etcd quorum, the servers and every request
through the load balancer go on. A removed node leaves the load balancer first, then its etcd
member is removed, then its services stop and its files go. The state file is saved after
every service that came up, so a run that stops continues from there next time. A failure is
an `ApplyError` naming the phase, the node, what the probe saw, the end of the service's log
and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.install import admin_api
from corral.install.cert_rotation_expiry import warn_expiring
from corral.install.desired import DEFAULT_SSH_PORT, ROLES, NodeSpec
from corral.install.etcd_members import MemberError
from corral.install.heartbeat import connect as connect_store
from corral.install.outputs import lb_config_path, nginx_config_path
from corral.install.plan import TITLES, Step
from corral.install.prepare import Output, Prepared
from corral.install.probes import check
from corral.install.progress import Progress
from corral.install.providers.base import NodeProblem
from corral.install.reconcile import etcd_client, peer_url
from corral.install.rolling import Rolling, RollingError
from corral.install.services import ServiceSpec, server_endpoint
from corral.install.state import LB_NODE, NodeState, save_state, write_private
from corral.server.domain.nodes import node_key, remove_node

PHASE_TIMEOUT_S = 90.0
READY_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 20.0
FORGET_TIMEOUT_S = 30.0  # removing a leader member costs an election: writes wait for it
POLL_S = 0.1
VERB = {"create": "Starting", "change": "Updating", "start": "Restarting"}


class ApplyError(RollingError):
    """The run stopped: where, what happened, and the fix."""


class PreflightError(Exception):
    """Nodes failed their checks before anything changed: every problem, each with its fix."""

    def __init__(self, problems: list[NodeProblem]) -> None:
        super().__init__("; ".join(p.line() for p in problems))
        self.problems = problems


@dataclass
class ApplyResult:
    """What the run did and what to tell the user."""

    changed: bool
    url: str
    password: str
    backup: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


class Applier:
    """One `corral up` run after its plan."""

    def __init__(self, prepared: Prepared, progress: Progress) -> None:
        self.prep = prepared
        self.progress = progress
        self.state = prepared.state
        self.changed = False
        self.counts = dict.fromkeys(("create", "change", "start", "remove"), 0)
        self.rolling = Rolling(prepared, progress)

    # -- helpers ------------------------------------------------------------------------------

    def _save(self) -> None:
        self.state = save_state(self.prep.state_file, self.state)
        self.changed = True

    def _spec(self, node: str, service: str) -> ServiceSpec:
        return next(s for s in self.prep.services[node] if s.name == service)

    def _record(self, node: str, service: str, digest: str | None) -> None:
        old = self.state.nodes.get(node)
        services = dict(old.services) if old else {}
        if digest is None:
            services.pop(service, None)
        else:
            services[service] = digest
        spec = self.prep.nodes.get(node)
        if spec is not None:
            login = {"user": spec.user, "port": str(spec.port),
                     "key": str(spec.ssh_key_path or ""),
                     "agent": "true" if spec.ssh_agent_auth else ""}
            record = NodeState(node, spec.address, spec.internal_address,
                               tuple(sorted(spec.roles)), services,
                               login if self.prep.desired.provider == "ssh" else {})
        else:
            listen = self.prep.desired.load_balancer
            address = listen.listen if listen else ""
            record = NodeState(node, address, address, (), services)
        self.state = self.state.with_node(record)
        self._save()

    # -- phases -------------------------------------------------------------------------------

    def _certificates(self) -> None:
        for name in self.prep.pki_changes:
            what = "the cluster CA" if name == "ca" else f"certificate {name}"
            self.progress.info(f"Generating {what}", "certificates")
        if self.prep.pki_changes or self.prep.fresh:
            self._save()
            self.progress.info(f"Saved the cluster CA and certificates to "
                               f"{self.prep.state_file.name}", "certificates")

    def _launch(self, step: Step) -> float:
        where = "" if step.node == LB_NODE else f" on node [{step.node}]"
        self.progress.info(f"{VERB[step.action]} {TITLES[step.service]}{where}", step.phase)
        try:
            return self.rolling.restart(step.node, [self._spec(step.node, step.service)])
        except RollingError as exc:
            raise ApplyError(step.phase, step.node, exc.message, exc.fix) from None

    def _wait(self, launched: list[tuple[Step, float]]) -> None:
        items = [(s.node, self._spec(s.node, s.service), since) for s, since in launched]
        results = asyncio.run(self.rolling.wait_many(items, PHASE_TIMEOUT_S))
        failures: list[tuple[Step, str]] = []
        for (step, _), (ok, detail, took) in zip(launched, results, strict=True):
            where = "" if step.node == LB_NODE else f" on node [{step.node}]"
            if ok:
                self.progress.info(f"{TITLES[step.service]}{where} is healthy ({took:.1f}s)",
                                   step.phase)
                self._record(step.node, step.service, self._spec(step.node, step.service).digest)
                self.counts[step.action] += 1
            else:
                failures.append((step, detail))
        if failures:
            step, detail = failures[0]
            error = self.rolling.failure(step.node, self._spec(step.node, step.service), detail)
            raise ApplyError(step.phase, step.node, error.message, error.fix, error.log)

    def _phase(self, phase: str) -> None:
        steps = [s for s in self.prep.plan.in_phase(phase) if s.action in VERB]
        joining = {s.node for s in self.prep.plan.in_phase(phase) if s.action == "member-add"}
        together = [s for s in steps if s.action != "change" and s.node not in joining]
        if together:  # every node at once (a remote node's launch is a few round trips)
            with ThreadPoolExecutor(max_workers=len(together)) as pool:
                futures = [(step, pool.submit(self._launch, step)) for step in together]
                launched = [(step, future.result()) for step, future in futures]
            self._wait(launched)
        for step in (s for s in steps if s.node in joining):
            self._join(step)
        if not self.prep.plan.rolling:  # a cluster that never ran: one node at a time
            for step in (s for s in steps if s.action == "change"):
                self._wait([(step, self._launch(step))])

    def _join(self, step: Step) -> None:
        """`member add`, then start the member into the running cluster (one at a time)."""
        node = step.node
        members = tuple(m for m in self.state.etcd_members if m != node)
        client = etcd_client(self.prep, members)
        if client is None:
            raise ApplyError("etcd", node, "no etcd member to join",
                             "keep at least one etcd node of the running cluster in the file")
        self.progress.info(f"Adding etcd member etcd-{node} ({peer_url(self.prep, node)}) to "
                           "the running etcd cluster", "etcd")
        try:
            client.add(f"etcd-{node}", peer_url(self.prep, node))
        except MemberError as exc:
            raise ApplyError("etcd", node, f"etcd member add failed: {exc}",
                             "check that the etcd members are healthy (corral up --dry-run "
                             "shows them)") from None
        self.state = replace(self.state, etcd_members=(*members, node))
        self._save()
        self._wait([(step, self._launch(step))])

    def _sync_lb(self) -> None:
        """The load balancer's configuration with the new nodes in and the removed ones out
        (a reload of the running corral lb: no connection is dropped)."""
        output = next(o for o in self.prep.outputs if o.path == lb_config_path(self.prep.desired))
        if self._write_output(output) and self.rolling.lb_running():
            reason = next((s.reason for s in self.prep.plan.in_phase("lb")
                           if s.action == "reload"), "its configuration changed")
            self.rolling.reload(reason)

    def _roll(self) -> None:
        """The changes of running nodes, one node at a time (drain, restart, healthy,
        restore)."""
        if not self.prep.plan.rolling:
            return
        self.rolling.heal()
        changes = [s for s in self.prep.plan.steps if s.action == "change" and s.node != LB_NODE]
        nodes = list(dict.fromkeys(s.node for s in changes))
        for index, node in enumerate(nodes):
            specs = [self._spec(node, s.service) for s in changes if s.node == node]
            after = nodes[index + 1] if index + 1 < len(nodes) else ""
            try:
                self.rolling.run(node, specs, why="its " + ", ".join(
                    TITLES[s.name] for s in specs) + " changed", then=after)
            except RollingError as exc:
                raise ApplyError("rolling", node, exc.message, exc.fix, exc.log) from None
            for step in (s for s in changes if s.node == node):
                self._record(node, step.service, self._spec(node, step.service).digest)
                self.counts["change"] += 1

    def _leave(self, node: str) -> None:
        """`member remove` of node's etcd member (asked of the members that stay)."""
        members = tuple(m for m in self.state.etcd_members if m != node)
        client = etcd_client(self.prep, members)
        if client is None:
            return
        self.progress.info(f"Removing etcd member etcd-{node} from the etcd cluster", "remove")
        try:
            client.remove(peer_url(self.prep, node))
        except MemberError as exc:
            raise ApplyError("remove", node, f"etcd member remove failed: {exc}",
                             "check that the other etcd members are healthy") from None
        initial = {k: v for k, v in self.state.etcd_initial.items() if k != node}
        self.state = replace(self.state, etcd_members=members, etcd_initial=initial)
        self._save()

    def _removals(self) -> None:
        steps = self.prep.plan.in_phase("remove")
        gone = sorted({s.node for s in steps if s.node not in self.prep.services})
        leaving = {s.node for s in steps if s.action == "member-remove"}
        for step in steps:
            if step.node in gone or step.action != "remove":
                continue
            if step.service == "etcd" and step.node in leaving:
                self._leave(step.node)
            self.progress.info(f"Removing {TITLES.get(step.service, step.service)} from node "
                               f"[{step.node}]", "remove")
            entries = {e.name: e for e in self.rolling.read_spec(step.node).services
                       if e.name != step.service}
            self.rolling.write_spec(step.node, entries)
            self._record(step.node, step.service, None)
            self.counts["remove"] += 1
        for node in gone:
            if node in leaving:
                self._leave(node)
            self.progress.info(f"Stopping and deleting node [{node}]", "remove")
            self._adopt(node)
            paths = self.rolling.paths(node)
            self.prep.provider.stop_node(paths, STOP_TIMEOUT_S)
            self.prep.provider.delete_node(paths)
            self.counts["remove"] += len(self.state.nodes.get(node, NodeState(node, "", "", ()))
                                         .services)
            self.state = self.state.without_node(node)
            self._save()
        if gone and self.prep.desired.nodes_with("etcd"):
            asyncio.run(self._forget(gone))

    def _adopt(self, name: str) -> None:
        """Let an SSH provider log in to node `name`, gone from the cluster file, with the
        login the state file recorded for it."""
        recorded = self.state.nodes.get(name)
        if recorded is None or not recorded.ssh:
            return
        login = recorded.ssh
        self.prep.provider.adopt(NodeSpec(
            name, recorded.address, recorded.internal_address,
            frozenset(r for r in ROLES if r in recorded.roles), user=login.get("user", "root"),
            port=int(login.get("port") or DEFAULT_SSH_PORT),
            ssh_key_path=Path(login["key"]) if login.get("key") else None,
            ssh_agent_auth=bool(login.get("agent"))))

    async def _forget(self, names: list[str]) -> None:
        """Delete the records of the nodes that left (kubectl get nodes stops showing them),
        asked again until FORGET_TIMEOUT_S: the etcd member just removed may have been the
        leader, and writes wait for the next one. A record left behind is said, not hidden."""
        node = self.prep.desired.nodes_with("etcd")[0]
        paths = self.rolling.paths(node.name)
        local = self.prep.provider.local_path
        beat = self.rolling.heartbeat(node, paths)
        beat = replace(beat, cafile=local(paths, beat.cafile), certfile=local(paths, beat.certfile),
                       keyfile=local(paths, beat.keyfile))
        left = [name for name in names if name != LB_NODE]
        deadline = time.monotonic() + FORGET_TIMEOUT_S
        problem = ""
        while left:
            try:
                store = await connect_store(beat)
                try:
                    while left:
                        await remove_node(store, left[0])
                        left.pop(0)
                finally:
                    await store.close()
            except Exception as exc:  # any store failure: asked again until the deadline
                problem = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
        for name in left:
            self.progress.warn(f"node [{name}]'s record is still in etcd ({problem}); delete it "
                               f"with `etcdctl del {beat.prefix}{node_key(name)}`", "remove")

    def _write_output(self, output: Output) -> bool:
        with contextlib.suppress(OSError):
            if output.path.read_bytes() == output.content:
                return False
        write_private(output.path, output.content, output.mode)
        self.progress.info(f"Wrote {output.path.name}", "outputs")
        self.changed = True
        return True

    def _token(self) -> str:
        desired, token = self.prep.desired, self.state.admin_token
        problem = ""
        for node in desired.nodes_with("controlplane"):
            endpoint = server_endpoint(node)
            try:
                if token and admin_api.token_works(endpoint, desired.fqdn, token):
                    return token
                self.progress.info("Creating the admin API token for the kubeconfig",
                                   "kubeconfig")
                token = admin_api.obtain_token(endpoint, desired.fqdn, self.state.admin_password,
                                               desired.cluster_name)
            except admin_api.AdminApiError as exc:
                problem = str(exc)
                continue
            self.state = replace(self.state, admin_token=token)
            self._save()
            return token
        raise ApplyError("kubeconfig", "", f"no admin API token: {problem}",
                         "check that the servers are healthy (corral up --dry-run shows them)")

    def _healthcheck(self, token: str) -> None:
        if self.prep.desired.load_balancer is not None:
            probe = self._spec(LB_NODE, "lb").health
            deadline = time.monotonic() + READY_TIMEOUT_S
            ok, detail = asyncio.run(check(probe))
            while not ok and time.monotonic() < deadline:
                time.sleep(POLL_S * 2)
                ok, detail = asyncio.run(check(probe))
            if not ok:
                raise ApplyError("healthcheck", LB_NODE, f"{self.prep.ctx.server_url}/ping "
                                 f"through corral lb: {detail}",
                                 f"see {self.rolling.paths(LB_NODE).log('lb')}")
            self.progress.info(f"{self.prep.ctx.server_url}/ping answers pong through corral lb",
                               "healthcheck")
        endpoint = server_endpoint(self.prep.desired.nodes_with("controlplane")[0])
        names = [n.name for n in self.prep.desired.nodes]
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready: dict[str, bool] | None = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(admin_api.AdminApiError):
                ready = admin_api.ready_nodes(endpoint, self.prep.desired.fqdn, token)
            if ready is None or all(ready.get(n) for n in names):
                break
            time.sleep(POLL_S * 5)
        if ready is None:
            return
        missing = [n for n in names if not ready.get(n)]
        if missing:
            self.progress.warn(f"nodes not Ready after {READY_TIMEOUT_S:g}s: "
                               f"{', '.join(missing)}", "healthcheck")
        else:
            self.progress.info(f"{len(names)} nodes Ready", "healthcheck")

    def run(self) -> ApplyResult:
        """Carry out the plan; raises ApplyError at the first failure."""
        plan = self.prep.plan
        if plan.problems:
            raise ApplyError("plan", "", "; ".join(plan.problems),
                             f"edit {self.prep.desired.source.name} as each problem says")
        if self.prep.preflight:
            raise PreflightError(self.prep.preflight)
        warn_expiring(self.prep, self.progress)
        nothing = not plan.service_changes
        self.progress.info(plan.summary() if nothing else "Building the cluster")
        self.prep.provider.install(self.progress)
        self._certificates()
        for phase in ("etcd", "server", "ingress"):
            self._phase(phase)
        self._sync_lb()  # the new nodes in, the removed ones out
        self._roll()
        self._removals()
        by_path = {o.path: o for o in self.prep.outputs}
        written = [o.path for o in self.prep.outputs]
        self._write_output(by_path[nginx_config_path(self.prep.desired)])
        self._phase("lb")
        token = self._token()
        kubeconfig = self.prep.kubeconfig(token)
        self._write_output(kubeconfig)
        self._healthcheck(token)
        return ApplyResult(self.changed, self.prep.ctx.server_url, self.state.admin_password,
                           [kubeconfig.path, self.prep.state_file], written)
