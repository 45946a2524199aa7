"""Carrying out the plan, phase by phase, in RKE's order: certificates, etcd, server, ingress,
removals, the external load balancer, the kubeconfig token, the output files, a final health
check.

In a phase, services to create or start are launched on every node at once (a new etcd cluster
needs all its members), then waited on until their probes pass; services to change are
restarted one node at a time (the etcd quorum and the servers stay up). The state file is saved
after every service that came up, so a run that stops continues from there next time. A failure
is an `ApplyError` naming the phase, the node, what the probe saw, the end of the service's log
and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from corral.install import admin_api
from corral.install.desired import NodeSpec
from corral.install.heartbeat import connect as connect_store
from corral.install.outputs import lb_config_path, nginx_config_path
from corral.install.plan import TITLES, Step
from corral.install.prepare import Output, Prepared, probe_for
from corral.install.probes import check
from corral.install.progress import Progress
from corral.install.providers.base import FileSpec, NodePaths, NodeProblem, Provider
from corral.install.services import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    ServiceSpec,
    client_files,
    etcd_endpoints,
    server_endpoint,
)
from corral.install.state import LB_NODE, NodeState, save_state
from corral.install.supervisor_spec import (
    HeartbeatSpec,
    ServiceEntry,
    SupervisorSpec,
    spec_json,
)
from corral.server.backend import DEFAULT_ETCD_PREFIX
from corral.server.domain.nodes import remove_node

PHASE_TIMEOUT_S = 90.0
FAIL_FAST_RESTARTS = 3  # a service that crashed this often while waited on has failed
READY_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1
LOG_TAIL_LINES = 12
CLOCK_SLACK_S = 0.01  # status.json's time is written by another process's clock reading
ORDER = ("etcd", "server", "ingress", "lb")
VERB = {"create": "Starting", "change": "Updating", "start": "Restarting"}
FIXES = {
    "etcd": "make sure ports 2379 and 2380 of the node's address are free and /usr/bin/etcd "
            "is installed (scripts/setup installs it)",
    "server": "make sure ports 8080 and 8443 of the node's address are free and the etcd "
              "members are healthy",
    "ingress": "make sure port 80 of the node's address is free",
    "lb": "make sure the load_balancer ports are free and its certificate files exist",
}


class ApplyError(Exception):
    """The run stopped: where, what happened, and the fix."""

    def __init__(self, phase: str, node: str, message: str, fix: str, log: str = "") -> None:
        super().__init__(message)
        self.phase, self.node, self.message, self.fix, self.log = phase, node, message, fix, log


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


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, data: bytes | None = None) -> str:
    """The last lines of a log file, or of its content `data` ("" when there is none)."""
    try:
        text = data.decode(errors="replace") if data is not None else path.read_text(
            errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _service_status(provider: Provider, paths: NodePaths, service: str) -> dict[str, Any]:
    """The supervisor's last word on `service` (with the file's `updatedAt`), {} if none."""
    try:
        data = json.loads(provider.read_file(paths, paths.status) or b"")
        entry = dict(data["services"][service])
        entry["updatedAt"] = float(data["updatedAt"])
        return entry
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _restarts(entry: dict[str, Any]) -> int:
    return int(entry.get("restarts", 0))


def _runs(entry: dict[str, Any], digest: str, since: float) -> bool:
    """True once the supervisor reports the service running with `digest`, after `since`."""
    return (
        entry.get("updatedAt", 0.0) >= since
        and entry.get("digest") == digest
        and bool(entry.get("running"))
    )


class Applier:
    """One `corral up` run after its plan."""

    def __init__(self, prepared: Prepared, progress: Progress) -> None:
        self.prep = prepared
        self.progress = progress
        self.state = prepared.state
        self.changed = False
        self.counts = dict.fromkeys(("create", "change", "start", "remove"), 0)
        self.launched: dict[Step, float] = {}  # wall-clock time each step was launched

    # -- helpers ------------------------------------------------------------------------------

    def _save(self) -> None:
        self.state = save_state(self.prep.state_file, self.state)
        self.changed = True

    def _paths(self, node: str) -> NodePaths:
        provider = self.prep.provider
        return provider.lb_paths() if node == LB_NODE else provider.node_paths(node)

    def _spec(self, node: str, service: str) -> ServiceSpec:
        return next(s for s in self.prep.services[node] if s.name == service)

    def _heartbeat(self, node: NodeSpec, paths: NodePaths) -> HeartbeatSpec:
        return HeartbeatSpec(
            name=node.name,
            roles=tuple(sorted(node.roles)),
            address=node.address,
            internal_address=node.internal_address,
            endpoints=etcd_endpoints(self.prep.desired),
            cafile=str(paths.file(CA_FILE)),
            certfile=str(paths.file(CLIENT_CERT)),
            keyfile=str(paths.file(CLIENT_KEY)),
            prefix=DEFAULT_ETCD_PREFIX,
            labels=dict(node.labels),
        )

    def _read_spec(self, paths: NodePaths) -> SupervisorSpec:
        data = self.prep.provider.read_file(paths, paths.supervisor_spec)
        return SupervisorSpec.from_json(json.loads(data)) if data else SupervisorSpec(())

    def _log_tail(self, paths: NodePaths, service: str) -> str:
        log = paths.log(service)
        return log_tail(log, data=self.prep.provider.read_file(paths, log) or b"")

    def _write_spec(self, node: str, entries: dict[str, ServiceEntry]) -> None:
        paths = self._paths(node)
        ordered = tuple(entries[n] for n in ORDER if n in entries)
        spec_node = self.prep.nodes.get(node)
        heartbeat = self._heartbeat(spec_node, paths) if spec_node is not None else None
        files: dict[str, FileSpec] = client_files(self.prep.ctx) if spec_node else {}
        files["run/supervisor.json"] = FileSpec(spec_json(SupervisorSpec(ordered, heartbeat)))
        provider = self.prep.provider
        provider.write_files(paths, files)
        if provider.supervisor_running(paths):
            provider.reload_supervisor(paths)
        else:
            provider.start_supervisor(paths)

    def _record(self, node: str, service: str, digest: str | None) -> None:
        old = self.state.nodes.get(node)
        services = dict(old.services) if old else {}
        if digest is None:
            services.pop(service, None)
        else:
            services[service] = digest
        spec = self.prep.nodes.get(node)
        if spec is not None:
            record = NodeState(node, spec.address, spec.internal_address,
                               tuple(sorted(spec.roles)), services)
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

    def _launch(self, step: Step) -> None:
        spec = self._spec(step.node, step.service)
        paths = self._paths(step.node)
        where = "" if step.node == LB_NODE else f" on node [{step.node}]"
        self.progress.info(f"{VERB[step.action]} {TITLES[step.service]}{where}", step.phase)
        self.launched[step] = self.prep.provider.node_time(paths) - CLOCK_SLACK_S
        try:
            self.prep.provider.write_files(paths, spec.files)
            entries = {e.name: e for e in self._read_spec(paths).services}
            entries[spec.name] = ServiceEntry(spec.name, spec.argv, spec.env, spec.health,
                                              spec.digest)
            self._write_spec(step.node, entries)
        except (OSError, ValueError) as exc:
            raise ApplyError(step.phase, step.node, f"cannot start {TITLES[step.service]}: "
                             f"{exc}", FIXES[step.service]) from None

    async def _wait_one(self, step: Step) -> tuple[Step, bool, str, float]:
        spec = self._spec(step.node, step.service)
        paths = self._paths(step.node)
        provider = self.prep.provider
        probe = probe_for(provider, paths, spec.health)
        started = time.monotonic()
        base = _restarts(await asyncio.to_thread(_service_status, provider, paths, spec.name))
        detail = "the supervisor has not started it"
        while time.monotonic() - started < PHASE_TIMEOUT_S:
            entry = await asyncio.to_thread(_service_status, provider, paths, spec.name)
            if _restarts(entry) - base >= FAIL_FAST_RESTARTS:
                return step, False, f"exited {FAIL_FAST_RESTARTS} times ({detail})", 0.0
            if not _runs(entry, spec.digest, self.launched.get(step, 0.0)):
                await asyncio.sleep(POLL_S)
                continue
            ok, detail = await check(probe)
            if ok:
                return step, True, "", time.monotonic() - started
            await asyncio.sleep(POLL_S)
        return step, False, f"not healthy after {PHASE_TIMEOUT_S:g}s: {detail}", 0.0

    def _wait(self, steps: list[Step]) -> None:
        async def all_of() -> list[tuple[Step, bool, str, float]]:
            return list(await asyncio.gather(*(self._wait_one(s) for s in steps)))

        failures: list[tuple[Step, str]] = []
        for step, ok, detail, took in asyncio.run(all_of()):
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
            paths = self._paths(step.node)
            log = paths.log(step.service)
            raise ApplyError(step.phase, step.node, f"{TITLES[step.service]} {detail}",
                             f"{FIXES[step.service]}; see {log}",
                             self._log_tail(paths, step.service))

    def _phase(self, phase: str) -> None:
        steps = [s for s in self.prep.plan.in_phase(phase) if s.action in VERB]
        together = [s for s in steps if s.action != "change"]
        if together:  # every node at once (a remote node's launch is a few round trips)
            with ThreadPoolExecutor(max_workers=len(together)) as pool:
                for future in [pool.submit(self._launch, step) for step in together]:
                    future.result()
            self._wait(together)
        for step in (s for s in steps if s.action == "change"):
            self._launch(step)
            self._wait([step])

    def _removals(self) -> None:
        steps = self.prep.plan.in_phase("remove")
        gone = sorted({s.node for s in steps if s.node not in self.prep.services})
        for step in steps:
            if step.node in gone:
                continue
            paths = self._paths(step.node)
            self.progress.info(f"Removing {TITLES.get(step.service, step.service)} from node "
                               f"[{step.node}]", "remove")
            entries = {e.name: e for e in self._read_spec(paths).services
                       if e.name != step.service}
            self._write_spec(step.node, entries)
            self._record(step.node, step.service, None)
            self.counts["remove"] += 1
        for node in gone:
            self.progress.info(f"Stopping and deleting node [{node}]", "remove")
            paths = self._paths(node)
            self.prep.provider.stop_node(paths, STOP_TIMEOUT_S)
            self.prep.provider.delete_node(paths)
            self.counts["remove"] += len(self.state.nodes.get(node, NodeState(node, "", "", ()))
                                         .services)
            self.state = self.state.without_node(node)
            self._save()
        if gone and self.prep.desired.nodes_with("etcd"):
            asyncio.run(self._forget(gone))

    async def _forget(self, names: list[str]) -> None:
        node = self.prep.desired.nodes_with("etcd")[0]
        paths = self._paths(node.name)
        local = self.prep.provider.local_path
        beat = self._heartbeat(node, paths)
        beat = replace(beat, cafile=local(paths, beat.cafile), certfile=local(paths, beat.certfile),
                       keyfile=local(paths, beat.keyfile))
        with contextlib.suppress(Exception):
            store = await connect_store(beat)
            try:
                for name in names:
                    if name != LB_NODE:
                        await remove_node(store, name)
            finally:
                await store.close()

    def _write_output(self, output: Output) -> bool:
        with contextlib.suppress(OSError):
            if output.path.read_bytes() == output.content:
                return False
        from corral.install.state import write_private

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
                                 f"see {self._paths(LB_NODE).log('lb')}")
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
        nothing = not plan.service_changes
        self.progress.info(plan.summary() if nothing else "Building the cluster")
        self.prep.provider.install(self.progress)
        self._certificates()
        for phase in ("etcd", "server", "ingress"):
            self._phase(phase)
        self._removals()
        by_path = {o.path: o for o in self.prep.outputs}
        written = [o.path for o in self.prep.outputs]
        self._write_output(by_path[lb_config_path(self.prep.desired)])
        self._write_output(by_path[nginx_config_path(self.prep.desired)])
        self._phase("lb")
        token = self._token()
        kubeconfig = self.prep.kubeconfig(token)
        self._write_output(kubeconfig)
        self._healthcheck(token)
        return ApplyResult(self.changed, self.prep.ctx.server_url, self.state.admin_password,
                           [kubeconfig.path, self.prep.state_file], written)
