"""`corral cert rotate`: each stage of `corral.install.cert_rotation` rolled over the running
cluster, node by node, without an outage.

Per stage: the stage's PKI is saved in the state file, the services are built from it
(`corral.install.prepare`, as `corral up` does), and each node whose services changed is
taken out of the external load balancer (and its server out of the other nodes' ingresses),
given its new files, restarted where it must be, waited on until healthy and put back
(`corral.install.rolling`), one node at a time, each recorded in the state file before the
next. A node where nothing restarts (an etcd member's new certificate from the same CA) is
not taken out. Then the load balancer gets its new certificate
by a reload (new workers, no connection refused or dropped), and the kubeconfig is rewritten
with the CA the servers now publish.

What restarts: `corral server` (it reads its certificates and the etcd client's when it
starts); an etcd member only when the set of CAs it trusts changes (etcd 3.4 reads its own
certificate and key again for every new TLS handshake, clients' and peers', but its trusted
CA file only when it starts): so a member is not restarted for new certificates from the same
CA; the node's supervisor never (its heartbeat connects again with the new files after a
refused write). `corral lb` is reloaded, not restarted.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from corral.install.cert_rotation import (
    Stage,
    finished,
    in_progress,
    rotation_stages,
    trust_changed,
)
from corral.install.desired import DesiredCluster
from corral.install.prepare import Prepared, lb_listeners, prepare, probe_for
from corral.install.progress import Progress
from corral.install.providers.base import NodePaths
from corral.install.rolling import Rolling, RollingError
from corral.install.services import CA_FILE, ETCD_CERT, LB_CERT_FILE, ServiceSpec
from corral.install.state import LB_NODE, ClusterState, load_state, save_state, state_path

PHASE = "certificates"
SERVE_TIMEOUT_S = 30.0  # a member or the lb must serve its new certificate within this
POLL_S = 0.2


class RotationError(RollingError):
    """The rotation stopped (or cannot start): where, what, the fix (RollingError's fields)."""


@dataclass
class RotationResult:
    """What the rotation did."""

    stages: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)  # `node/service`
    reloaded: list[str] = field(default_factory=list)  # `node/etcd` (no restart), `lb`
    kubeconfig: Path | None = None


def served_certificate(url: str, cafile: str = "", certfile: str = "", keyfile: str = "",
                       server_name: str = "") -> bytes:
    """The DER of the certificate the TLS server at `url` presents on a new handshake."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context(cafile=cafile or None)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what is served is compared, not trusted, here
    if certfile:
        context.load_cert_chain(certfile, keyfile or None)
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(
            raw, server_hostname=server_name or host) as tls:
        der = tls.getpeercert(binary_form=True)
    return der or b""


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode().split("-----END CERTIFICATE-----")[0]
                                    + "-----END CERTIFICATE-----\n")


def wait_serving(url: str, wanted_pem: bytes, what: str, *, cafile: str = "",
                 certfile: str = "", keyfile: str = "", server_name: str = "",
                 timeout_s: float = SERVE_TIMEOUT_S) -> None:
    """Wait until `url` serves the first certificate of `wanted_pem` on new handshakes."""
    wanted = _der(wanted_pem)
    deadline = time.monotonic() + timeout_s
    seen = "nothing"
    while True:
        try:
            if served_certificate(url, cafile, certfile, keyfile, server_name) == wanted:
                return
            seen = "its previous certificate"
        except (OSError, ssl.SSLError) as exc:
            seen = f"no TLS handshake ({exc})"
        if time.monotonic() > deadline:
            raise RotationError(PHASE, "", f"{what} at {url} does not serve its new "
                                f"certificate after {timeout_s:g}s ({seen})",
                                "see its log; run `corral cert rotate` again")
        time.sleep(POLL_S)


class StageRoll:
    """One stage rolled over the cluster `prepared` was built for (from the stage's PKI)."""

    def __init__(self, prepared: Prepared, progress: Progress, stage: Stage,
                 result: RotationResult) -> None:
        self.prep, self.progress, self.stage, self.result = prepared, progress, stage, result
        self.state: ClusterState = prepared.state

    def _record(self, node: str, specs: list[ServiceSpec]) -> None:
        old = self.state.nodes[node]
        services: dict[str, str] = dict(old.services)
        services.update((s.name, s.digest) for s in specs)
        self.state = save_state(self.prep.state_file,
                                self.state.with_node(replace(old, services=services)))

    def _changed(self, node: str) -> list[ServiceSpec]:
        recorded = self.state.nodes[node].services
        return [s for s in self.prep.services.get(node, ()) if recorded.get(s.name) != s.digest]

    def _node(self, rolling: Rolling, node: str) -> None:
        changed = self._changed(node)
        if not changed:
            self.progress.info(f"node [{node}] already has them", PHASE)
            return
        provider = self.prep.provider
        paths = provider.node_paths(node)
        quiet = [s for s in changed if s.name == "etcd" and not trust_changed(
            provider.read_file(paths, paths.file(CA_FILE)), s.files[CA_FILE].content)]
        loud = [s for s in changed if s not in quiet]

        def step(name: str) -> None:
            for spec in quiet:  # etcd takes these on its next handshakes
                provider.write_files(paths, spec.files)
            if loud:
                rolling.restart(name, loud)

        if loud:  # out of the lb and of the other ingresses, restarted, healthy, back in
            rolling.run(node, loud, step=step, why=self.stage.what)
        else:  # only files etcd reads on its next handshakes: nothing restarts, nothing drains
            step(node)
        for spec in quiet:
            self._wait_member(paths, spec)
            self.result.reloaded.append(f"{node}/{spec.name}")
        self.result.restarted += [f"{node}/{s.name}" for s in loud]
        self._record(node, changed)
        shown = ", ".join(f"{s.name} {'restarted' if s in loud else 'reloaded'}"
                          for s in changed)
        self.progress.info(f"node [{node}] has {self.stage.what} ({shown})", PHASE)

    def _wait_member(self, paths: NodePaths, spec: ServiceSpec) -> None:
        probe = probe_for(self.prep.provider, paths, spec.health)
        base = probe.url.rsplit("/", 1)[0]
        try:
            wait_serving(base, spec.files[ETCD_CERT].content,
                         f"the etcd member of node [{paths.node or 'local'}]",
                         cafile=probe.cafile, certfile=probe.certfile, keyfile=probe.keyfile)
        except RotationError as exc:
            raise RotationError(PHASE, spec.name, exc.message, exc.fix) from None

    def _lb(self, rolling: Rolling) -> None:
        specs = self._changed(LB_NODE) if LB_NODE in self.state.nodes else []
        if not specs:
            return
        spec = specs[0]
        provider = self.prep.provider
        provider.write_files(provider.lb_paths(), spec.files)
        if not rolling.lb_running():
            raise RotationError(PHASE, LB_NODE, "corral lb does not run, so it cannot load its "
                                "new certificate", f"start it with `corral up --config "
                                f"{self.prep.desired.source}`, then run `corral cert rotate` "
                                "again")
        rolling.reload(self.stage.what)  # `corral lb reload`: checked first, then new workers
        if LB_CERT_FILE in spec.files:
            probe = spec.health
            wait_serving(probe.url.rsplit("/", 1)[0], spec.files[LB_CERT_FILE].content,
                         "corral lb", server_name=probe.server_name)
        self.result.reloaded.append("lb")
        self._record(LB_NODE, [spec])
        self.progress.info(f"corral lb reloaded with {self.stage.what}", PHASE)

    def _kubeconfig(self) -> None:
        from corral.install.state import write_private

        output = self.prep.kubeconfig(self.state.admin_token)
        self.result.kubeconfig = output.path
        try:
            if output.path.read_bytes() == output.content:
                return
        except OSError:
            pass
        write_private(output.path, output.content, output.mode)
        self.progress.info(f"Wrote {output.path.name} (the CA data clients must trust now)",
                           "kubeconfig")

    def run(self) -> None:
        """Every node in file order, then the load balancer, then the kubeconfig."""
        rolling = Rolling(self.prep, self.progress, phase=PHASE)
        for node in self.prep.desired.nodes:
            self._node(rolling, node.name)
        self._lb(rolling)
        self._kubeconfig()


def _ready(prepared: Prepared, config: Path, resuming: bool) -> None:
    """Refuse to rotate a cluster that does not run as its file says (`resuming`: a CA
    rotation under way, whose changes are expected)."""
    if prepared.preflight:
        first = prepared.preflight[0]
        raise RotationError("preflight", first.node, first.message, first.fix)
    plan = prepared.plan
    pending = [s for s in plan.service_changes if not (resuming and s.action == "change")]
    if plan.problems or pending:
        shown = "; ".join([*plan.problems, *(s.line() for s in pending[:4])])
        raise RotationError(PHASE, "", f"the cluster does not run as {config.name} asks ({shown})",
                            f"run `corral up --config {config}` first, then rotate")


def rotate(desired: DesiredCluster, progress: Progress, *, rotate_ca: bool,
           state_dir: Path | None = None) -> RotationResult:
    """Rotate the cluster's certificates (with `rotate_ca`, its CA too), stage by stage."""
    path = state_path(desired)
    state = load_state(path)
    if state is None:
        raise RotationError(PHASE, "", f"{path} does not exist: there is no cluster to rotate",
                            f"build it with `corral up --config {desired.source}`")
    resuming = in_progress(state.pki)
    if resuming:
        progress.info(f"A rotation stopped in its {resuming} stage: continuing it", PHASE)
    first = prepare(desired, state_dir, progress)
    try:
        _ready(first, desired.source, resuming is not None)
    finally:
        first.provider.close()
    lb_host = lb_listeners(desired).https[0]
    stages = rotation_stages(desired, state.pki, rotate_ca=rotate_ca, lb_host=lb_host)
    result = RotationResult()
    for number, stage in enumerate(stages, 1):
        progress.info(f"Stage {number} of {len(stages)} ({stage.name}): {stage.what}", PHASE)
        current = load_state(path) or state
        save_state(path, replace(current, pki=stage.pki))
        prepared = prepare(desired, state_dir, progress)
        try:
            if prepared.pki_changes:  # what the stage gave must be what the services get
                raise RotationError(PHASE, "", "the certificates of the stage are not what "
                                    f"the cluster file needs ({', '.join(prepared.pki_changes)})",
                                    f"run `corral up --config {desired.source}`, then rotate")
            StageRoll(prepared, progress, stage, result).run()
        finally:
            prepared.provider.close()
        result.stages.append(stage.name)
    current = load_state(path) or state
    save_state(path, replace(current, pki=finished(current.pki)))
    return result
