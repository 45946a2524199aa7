"""Node by node through the external load balancer: take a node out at `corral lb`, run a step
on it (restart its services with new files, a new release, new certificates), wait until its
services are healthy, put it back in, then the next node (Kubernetes' rolling update, with the
load balancer doing what a Service's endpoints do).

    rolling = Rolling(prepared, progress)
    rolling.roll(["node-1", "node-2", "node-3"], lambda node: specs[node], why="new certificates")

`drain` rewrites `<stem>.lb.yml` without the node's endpoint, has the running `corral lb`
reload it (new workers on the same sockets: no connection is refused) and waits until the
previous workers finished what they had in flight; `restore` puts the endpoint back the same
way. Without `load_balancer:` in the cluster file (the load balancer is the operator's) or
while `corral lb` does not run, both only say so, and the load balancer's own `/healthz`
checks do the work. The last node with an endpoint is never drained (the cluster would have
none): it is restarted in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from corral.config.errors import ConfigError
from corral.install.desired import NodeSpec
from corral.install.outputs import lb_config_path, lb_yaml
from corral.install.plan import TITLES
from corral.install.prepare import Prepared, lb_certificate, lb_listeners, probe_for
from corral.install.probes import check
from corral.install.progress import Progress
from corral.install.providers.base import FileSpec, NodePaths
from corral.install.reconcile_ingress import Draining, sync_ingresses
from corral.install.services import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    ServiceSpec,
    client_files,
    etcd_endpoints,
)
from corral.install.state import LB_NODE, write_private
from corral.install.supervisor_spec import HeartbeatSpec, ServiceEntry, SupervisorSpec, spec_json
from corral.server.backend import DEFAULT_ETCD_PREFIX

NodeStep = Callable[[str], None]  # the work on one node (its name); raises to stop the roll
DRAIN_TIMEOUT_S = 30.0  # the longest drain waits for the previous lb workers to finish
HEALTHY_TIMEOUT_S = 90.0  # the longest a restarted node may take to be healthy
FAIL_FAST_RESTARTS = 3  # a service that crashed this often while waited on has failed
POLL_S = 0.1
LOG_TAIL_LINES = 12
CLOCK_SLACK_S = 0.01  # status.json's time is written by another process's clock reading
ORDER = ("etcd", "server", "ingress", "lb")
FIXES = {
    "etcd": "make sure ports 2379 and 2380 of the node's address are free and /usr/bin/etcd "
            "is installed (scripts/setup installs it)",
    "server": "make sure ports 8080 and 8443 of the node's address are free and the etcd "
              "members are healthy",
    "ingress": "make sure port 80 of the node's address is free",
    "lb": "make sure the load_balancer ports are free and its certificate files exist",
}


class RollingError(Exception):
    """A node did not come back: where, what the probe saw, the log's end and the fix. The
    node stays out of the load balancer; `corral up` puts it back once it is healthy."""

    def __init__(self, phase: str, node: str, message: str, fix: str, log: str = "") -> None:
        super().__init__(message)
        self.phase, self.node, self.message, self.fix, self.log = phase, node, message, fix, log

    def report(self, progress: Progress, then: str) -> None:
        """The FATA lines of this failure: the node and what went wrong, the log's end, the
        fix followed by `then` (what to run afterwards)."""
        where = f"node [{self.node}]: " if self.node and self.node != LB_NODE else ""
        progress.fatal(f"{where}{self.message}", self.phase)
        if self.log:
            progress.fatal(f"the log ends:\n{self.log}", self.phase)
        progress.fatal(f"fix: {self.fix}; then {then}", self.phase)


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `text`."""
    return "\n".join(text.splitlines()[-lines:])


def service_status(prepared: Prepared, paths: NodePaths, service: str) -> dict[str, Any]:
    """The supervisor's last word on `service` (with the file's `updatedAt`), {} if none."""
    try:
        data = json.loads(prepared.provider.read_file(paths, paths.status) or b"")
        entry = dict(data["services"][service])
        entry["updatedAt"] = float(data["updatedAt"])
        return entry
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _runs(entry: dict[str, Any], digest: str, since: float) -> bool:
    """True once the supervisor reports the service running with `digest`, after `since`."""
    return (entry.get("updatedAt", 0.0) >= since and entry.get("digest") == digest
            and bool(entry.get("running")))


class Rolling:
    """Node-by-node changes of one `corral up` run (`prepared`: its desired cluster,
    provider and services); progress lines go to `progress` under `phase`. Also what every
    service launch of the run goes through (`restart`, `wait_healthy`)."""

    def __init__(self, prepared: Prepared, progress: Progress, phase: str = "rolling") -> None:
        self.prep = prepared
        self.progress = progress
        self.phase = phase
        self._out: set[str] = set()  # nodes out of the lb
        self._back = ""  # a node of a roll, healthy, that goes back in with the next drain
        self._servers_out: set[str] = set()  # nodes whose server is out of the ingresses

    # -- nodes and their supervisors ------------------------------------------------------------

    def paths(self, node: str) -> NodePaths:
        """The directories of `node` (or of the external load balancer)."""
        provider = self.prep.provider
        return provider.lb_paths() if node == LB_NODE else provider.node_paths(node)

    def heartbeat(self, node: NodeSpec, paths: NodePaths) -> HeartbeatSpec:
        """Where node `node`'s supervisor writes its record."""
        return HeartbeatSpec(
            name=node.name, roles=tuple(sorted(node.roles)), address=node.address,
            internal_address=node.internal_address, endpoints=etcd_endpoints(self.prep.desired),
            cafile=str(paths.file(CA_FILE)), certfile=str(paths.file(CLIENT_CERT)),
            keyfile=str(paths.file(CLIENT_KEY)), prefix=DEFAULT_ETCD_PREFIX,
            labels=dict(node.labels),
        )

    def read_spec(self, node: str) -> SupervisorSpec:
        """What the node's supervisor runs now."""
        paths = self.paths(node)
        data = self.prep.provider.read_file(paths, paths.supervisor_spec)
        return SupervisorSpec.from_json(json.loads(data)) if data else SupervisorSpec(())

    def write_spec(self, node: str, entries: dict[str, ServiceEntry]) -> None:
        """Give `node`'s supervisor `entries` (and its heartbeat), start or reload it."""
        paths = self.paths(node)
        ordered = tuple(entries[n] for n in ORDER if n in entries)
        spec_node = self.prep.nodes.get(node)
        heartbeat = self.heartbeat(spec_node, paths) if spec_node is not None else None
        files: dict[str, FileSpec] = client_files(self.prep.ctx) if spec_node else {}
        files["run/supervisor.json"] = FileSpec(spec_json(SupervisorSpec(ordered, heartbeat)))
        provider = self.prep.provider
        provider.write_files(paths, files)
        if provider.supervisor_running(paths):
            provider.reload_supervisor(paths)
        else:
            provider.start_supervisor(paths)

    def restart(self, node: str, specs: Sequence[ServiceSpec]) -> float:
        """Write `specs`' files to `node`, put them in its supervisor's spec and make the
        supervisor read it (each service whose digest changed restarts); returns the node's
        clock at the launch, for `wait_healthy`."""
        paths = self.paths(node)
        since = self.prep.provider.node_time(paths) - CLOCK_SLACK_S
        try:
            for spec in specs:
                self.prep.provider.write_files(paths, spec.files)
            entries = {e.name: e for e in self.read_spec(node).services}
            for spec in specs:
                entries[spec.name] = ServiceEntry(spec.name, spec.argv, spec.env, spec.health,
                                                  spec.digest)
            self.write_spec(node, entries)
        except (OSError, ValueError) as exc:
            first = specs[0].name if specs else "lb"
            raise RollingError(self.phase, node, f"cannot start {TITLES[first]}: {exc}",
                               FIXES[first]) from None
        return since

    async def _wait_one(self, node: str, spec: ServiceSpec, since: float,
                        timeout_s: float) -> tuple[bool, str, float]:
        paths = self.paths(node)
        probe = probe_for(self.prep.provider, paths, spec.health)
        started = time.monotonic()
        base = int((await asyncio.to_thread(service_status, self.prep, paths, spec.name))
                   .get("restarts", 0))
        detail = "the supervisor has not started it"
        while time.monotonic() - started < timeout_s:
            entry = await asyncio.to_thread(service_status, self.prep, paths, spec.name)
            if int(entry.get("restarts", 0)) - base >= FAIL_FAST_RESTARTS:
                return False, f"exited {FAIL_FAST_RESTARTS} times ({detail})", 0.0
            if _runs(entry, spec.digest, since):
                ok, detail = await check(probe)
                if ok:
                    return True, "", time.monotonic() - started
            await asyncio.sleep(POLL_S)
        return False, f"not healthy after {timeout_s:g}s: {detail}", 0.0

    async def wait_many(
        self, items: Sequence[tuple[str, ServiceSpec, float]], timeout_s: float,
    ) -> list[tuple[bool, str, float]]:
        """`(node, spec, since)` each waited on at once: (healthy, detail, seconds taken)."""
        return list(await asyncio.gather(*(self._wait_one(n, s, since, timeout_s)
                                           for n, s, since in items)))

    def failure(self, node: str, spec: ServiceSpec, detail: str) -> RollingError:
        """The error for `spec` of `node` not coming up: the log's end and the fix."""
        paths = self.paths(node)
        log = paths.log(spec.name)
        text = (self.prep.provider.read_file(paths, log) or b"").decode(errors="replace")
        return RollingError(self.phase, node, f"{TITLES[spec.name]} {detail}",
                            f"{FIXES[spec.name]}; see {log}", log_tail(text))

    def wait_healthy(
        self, node: str, specs: Sequence[ServiceSpec], since: float,
        timeout_s: float = HEALTHY_TIMEOUT_S,
    ) -> None:
        """Wait until the supervisor runs every one of `specs` with its digest (started after
        `since`, node clock) and each passes its health probe from this machine; raises
        RollingError (the log's end, the fix) when one does not within `timeout_s` or
        crashes repeatedly."""
        results = asyncio.run(self.wait_many([(node, s, since) for s in specs], timeout_s))
        for spec, (ok, detail, took) in zip(specs, results, strict=True):
            if not ok:
                raise self.failure(node, spec, detail)
            where = "" if node == LB_NODE else f" on node [{node}]"
            self.progress.info(f"{TITLES[spec.name]}{where} is healthy ({took:.1f}s)",
                               self.phase)

    # -- the external load balancer -------------------------------------------------------------

    @property
    def drained(self) -> frozenset[str]:
        """The nodes taken out of the load balancer and not yet put back."""
        return frozenset(self._out)

    def lb_text(self) -> str:
        """`<stem>.lb.yml` with every worker of the cluster file but the drained ones."""
        desired, provider = self.prep.desired, self.prep.provider
        endpoints = [provider.ingress_endpoint(n) for n in desired.nodes_with("worker")
                     if n.name not in self._out]
        return lb_yaml(desired, endpoints, lb_listeners(desired),
                       lb_certificate(desired, provider))

    def lb_running(self) -> bool:
        """True when this run's cluster has `load_balancer:` and its corral lb runs."""
        if self.prep.desired.load_balancer is None:
            return False
        return bool(service_status(self.prep, self.paths(LB_NODE), "lb").get("running"))

    def _write_lb(self) -> bool:
        """Write `<stem>.lb.yml` as it should be now; True when it changed."""
        path = lb_config_path(self.prep.desired)
        text = self.lb_text().encode()
        with contextlib.suppress(OSError):
            if path.read_bytes() == text:
                return False
        write_private(path, text, 0o644)
        return True

    def _signal_lb(self) -> list[int]:
        """Check `<stem>.lb.yml` as `corral lb reload` does, then SIGHUP the supervised lb's
        master; returns its previous workers, which now drain."""
        from corral.config.lb_load import load_lb_config

        path = lb_config_path(self.prep.desired)
        try:
            load_lb_config(path)
        except ConfigError as exc:
            problems = "; ".join(str(p) for p in exc.problems[:3])
            raise RollingError("lb", "", f"corral lb cannot reload {path}: {problems}",
                               f"check it with `corral lb --check --config {path}`") from None
        pid = int(service_status(self.prep, self.paths(LB_NODE), "lb").get("pid") or 0)
        old: list[int] = []
        with contextlib.suppress(psutil.Error):
            old = [c.pid for c in psutil.Process(pid).children()]
        try:
            os.kill(pid, signal.SIGHUP)
        except (ProcessLookupError, PermissionError) as exc:
            raise RollingError("lb", "", f"cannot signal corral lb (pid {pid}): {exc}",
                               f"see {self.paths(LB_NODE).log('lb')}") from None
        return old

    def _drained(self, draining: Draining) -> float:
        """Wait until the workers of `draining` (per node) have exited, at most
        DRAIN_TIMEOUT_S; seconds."""
        started = time.monotonic()
        left = [(paths, pids) for paths, pids in draining if pids]
        while left:
            left = [(paths, alive) for paths, pids in left
                    if (alive := self.prep.provider.still_running(paths, pids))]
            if not left:
                break
            if time.monotonic() - started > DRAIN_TIMEOUT_S:
                which = ", ".join(f"node [{paths.node}]'s ingress" if paths.node else
                                  "corral lb" for paths, _ in left)
                self.progress.warn(f"previous workers of {which} still drain after "
                                   f"{DRAIN_TIMEOUT_S:g}s (long requests or WebSockets: their "
                                   "log says what they hold); going on", self.phase)
                break
            time.sleep(POLL_S)
        return time.monotonic() - started

    def reload(self, why: str) -> None:
        """`corral lb reload` of the supervised lb; wait until its previous workers are gone."""
        took = self._drained([(self.paths(LB_NODE), self._signal_lb())])
        self.progress.info(f"Reloaded corral lb ({why}; {took:.1f}s to drain the previous "
                           "workers)", "lb")

    def _sync(self, skip: Sequence[str] = ()) -> float:
        """The lb's file and every ingress's file as the drained nodes ask, the running ones
        reloaded at once; waits until their previous workers are gone. Seconds it took."""
        draining: Draining = []
        if self._write_lb() and self.lb_running():
            draining.append((self.paths(LB_NODE), self._signal_lb()))
        draining += sync_ingresses(self.prep, self._servers_out, skip)
        return self._drained(draining)

    def _endpoint(self, node: str) -> str:
        spec = self.prep.nodes.get(node)
        if spec is None or not spec.has("worker"):
            return ""
        return self.prep.provider.ingress_endpoint(spec)

    def drain(self, node: str, skip_ingress: Sequence[str] = (), server: bool = True) -> None:
        """Take `node` out of the external load balancer (its endpoint out of `<stem>.lb.yml`,
        `corral lb` reloaded) and its server out of every node's ingress (`ingress.yml`
        rewritten, SIGHUP; but on nodes in `skip_ingress`); wait until the
        previous workers are gone (at most DRAIN_TIMEOUT_S). `server=False` leaves the node's
        server in the ingresses (it does not restart). The last endpoint or server is never
        taken out."""
        if node in self._out or node in self._servers_out:
            return
        back, self._back = self._back, ""
        if back:  # the previous node of a roll goes back in with the same reloads
            self._out.discard(back)
            self._servers_out.discard(back)
        spec = self.prep.nodes.get(node)
        workers = [n.name for n in self.prep.desired.nodes_with("worker")]
        servers = [n.name for n in self.prep.desired.nodes_with("controlplane")]
        endpoint = self._endpoint(node)
        if endpoint and [n for n in workers if n not in self._out and n != node]:
            self._out.add(node)
        elif endpoint:
            self.progress.warn(f"node [{node}] is the last endpoint of the load balancer: it "
                               "stays in while it changes", self.phase)
        if server and spec is not None and spec.has("controlplane") and [
                n for n in servers if n not in self._servers_out and n != node]:
            self._servers_out.add(node)
        took = self._sync(skip_ingress)
        if back:
            self.progress.info(f"Node [{back}] is back in the load balancer", self.phase)
        if node in self._out or node in self._servers_out:
            self.progress.info(f"Node [{node}] is out of the load balancer"
                               f"{f' ({endpoint})' if endpoint else ''} ({took:.1f}s to drain)",
                               self.phase)

    def restore(self, node: str, skip_ingress: Sequence[str] = ()) -> None:
        """Put `node` back into the external load balancer and the ingresses."""
        if self._back == node:
            self._back = ""
        if node not in self._out and node not in self._servers_out:
            return
        self._out.discard(node)
        self._servers_out.discard(node)
        self._sync(skip_ingress)
        self.progress.info(f"Node [{node}] is back in the load balancer", self.phase)

    def heal(self) -> None:
        """Every node back in: the lb's and the ingresses' files as the cluster file asks (a
        run that stopped half-way through a roll left one out), reloaded where they differ."""
        self._out.clear()
        self._servers_out.clear()
        self._sync()

    # -- node by node ---------------------------------------------------------------------------

    def run(self, node: str, specs: Sequence[ServiceSpec], step: NodeStep | None = None,
            why: str = "", then: str = "") -> None:
        """drain(node); then `step(node)` (default: `restart(node, specs)`); wait until every
        one of `specs` is healthy (started after the step began); restore(node) — or, when
        `then` names the next node to drain, leave `node` to go back in with the same reloads
        that take `then` out. On failure the node stays drained and RollingError
        propagates."""
        own = [node] if any(s.name == "ingress" for s in specs) else []
        self.drain(node, own, server=any(s.name in ("server", "etcd") for s in specs))
        names = ", ".join(TITLES[s.name] for s in specs)
        self.progress.info(f"Updating {names} on node [{node}]" + (f" ({why})" if why else ""),
                           self.phase)
        if step is None:
            since = self.restart(node, specs)
        else:
            since = self.prep.provider.node_time(self.paths(node)) - CLOCK_SLACK_S
            step(node)
        self.wait_healthy(node, specs, since)
        if then and then != node:
            self._back = node
        else:
            self.restore(node, own)

    def roll(self, nodes: Sequence[str], specs: Callable[[str], Sequence[ServiceSpec]],
             step: NodeStep | None = None, why: str = "") -> None:
        """`run(node, specs(node), step, why)` on each of `nodes` in order: one node out of
        the load balancer at a time, each healthy before the next goes out (one reload puts
        a node back and takes the next one out)."""
        for index, node in enumerate(nodes):
            after = nodes[index + 1] if index + 1 < len(nodes) else ""
            self.run(node, specs(node), step, why, then=after)
