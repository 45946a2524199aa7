"""A lost or stale state file, rebuilt from what the nodes hold.

Every node keeps what its services were started with: its supervisor's spec (each service's
command line, environment and digest; the node's name, roles and addresses), its certificates
and keys from the cluster CA, and the cluster CA's certificate. From these `rebuild` recovers
the state file: the etcd token and each member's start flags (the etcd command line), the
admin password (the servers' environment), the admin token (the kubeconfig), the certificates,
and each node's services with their digests, so the plan keeps what runs as the file asks.

What no node holds is the cluster CA's private key (only the state file has it): a rebuilt
state cannot issue certificates. When this run needs a new one (a new node, a changed name),
`corral up` stops and says so: restore the state file from its backup.

A state file that exists but misses nodes the cluster runs (an older backup) gets those nodes
(their certificates and services) added the same way: `refresh`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import yaml

from corral.install.cluster_pki import (
    ETCD_CLIENT,
    LB_CERT,
    CertPair,
    ClusterPki,
    etcd_cert_name,
    pending_certificates,
    server_cert_name,
)
from corral.install.desired import DesiredCluster
from corral.install.kubeconfig import kubeconfig_path
from corral.install.progress import Progress
from corral.install.providers.base import NodePaths, Provider, ProviderError
from corral.install.services import (
    BOOTSTRAP_PASSWORD_ENV,
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    ETCD_CERT,
    ETCD_KEY,
    LB_CERT_FILE,
    LB_KEY_FILE,
    SERVER_CERT,
    SERVER_KEY,
)
from corral.install.state import (
    LB_NODE,
    ClusterState,
    NodeState,
    load_state,
    new_state,
    save_state,
    state_path,
)
from corral.install.supervisor_spec import SupervisorSpec

FLAG = {"token": "--initial-cluster-token=", "cluster": "--initial-cluster=",
        "state": "--initial-cluster-state=", "name": "--name=etcd-"}
BEGIN = "-----BEGIN CERTIFICATE-----"


class RebuildError(Exception):
    """The state cannot be rebuilt: what is missing and how to fix it."""


def _text(provider: Provider, paths: NodePaths, relative: str) -> str:
    data = provider.read_file(paths, paths.file(relative))
    return data.decode(errors="replace") if data else ""


def _spec(provider: Provider, paths: NodePaths) -> SupervisorSpec | None:
    data = provider.read_file(paths, paths.supervisor_spec)
    if not data:
        return None
    try:
        return SupervisorSpec.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError):
        return None


def _pair(provider: Provider, paths: NodePaths, cert: str, key: str) -> CertPair | None:
    cert_pem, key_pem = _text(provider, paths, cert), _text(provider, paths, key)
    if not cert_pem or not key_pem:
        return None
    first = cert_pem.split(BEGIN)[1:2]  # the leaf of a chain
    return CertPair(f"{BEGIN}{first[0]}" if first else cert_pem, key_pem)


def _flag(argv: tuple[str, ...], name: str) -> str:
    prefix = FLAG[name]
    return next((a[len(prefix):] for a in argv if a.startswith(prefix)), "")


class Found:
    """What the nodes of the cluster file hold (read once)."""

    def __init__(self, desired: DesiredCluster, provider: Provider) -> None:
        self.specs: dict[str, SupervisorSpec] = {}
        self.certs: dict[str, CertPair] = {}
        self.ca_pem = ""
        self.paths: dict[str, NodePaths] = {}
        for node in desired.nodes:
            paths = provider.node_paths(node.name)
            try:
                spec = _spec(provider, paths)
            except ProviderError:  # unreachable: holds nothing here; preflight says why
                continue
            if spec is None or not spec.services:
                continue
            self.specs[node.name], self.paths[node.name] = spec, paths
            self.ca_pem = self.ca_pem or _text(provider, paths, CA_FILE)
            for name, cert, key in ((etcd_cert_name(node.name), ETCD_CERT, ETCD_KEY),
                                    (server_cert_name(node.name), SERVER_CERT, SERVER_KEY),
                                    (ETCD_CLIENT, CLIENT_CERT, CLIENT_KEY)):
                pair = _pair(provider, paths, cert, key)
                if pair is not None:
                    self.certs.setdefault(name, pair)
        lb = provider.lb_paths()
        lb_spec = _spec(provider, lb)
        if lb_spec is not None and lb_spec.services:
            self.specs[LB_NODE], self.paths[LB_NODE] = lb_spec, lb
            pair = _pair(provider, lb, LB_CERT_FILE, LB_KEY_FILE)
            if pair is not None:
                self.certs[LB_CERT] = pair

    def node_state(self, name: str) -> NodeState:
        """Node `name` as its supervisor's spec has it."""
        spec = self.specs[name]
        beat = spec.heartbeat
        if beat is None:
            return NodeState(name, "", "", (), spec.digests)
        return NodeState(name, beat.address, beat.internal_address, beat.roles, spec.digests)

    def etcd(self) -> tuple[str, dict[str, tuple[str, str]]]:
        """The etcd token and each member's start flags, from the etcd command lines."""
        token, initial = "", {}
        for name, spec in self.specs.items():
            for entry in spec.services:
                if entry.name == "etcd":
                    token = token or _flag(entry.argv, "token")
                    initial[name] = (_flag(entry.argv, "cluster"), _flag(entry.argv, "state"))
        return token, initial

    def password(self) -> str:
        """The admin password the servers were started with."""
        for spec in self.specs.values():
            for entry in spec.services:
                if entry.name == "server" and entry.env.get(BOOTSTRAP_PASSWORD_ENV):
                    return entry.env[BOOTSTRAP_PASSWORD_ENV]
        return ""


def _token(desired: DesiredCluster) -> str:
    try:
        data = yaml.safe_load(kubeconfig_path(desired).read_text())
        return str(data["users"][0]["user"]["token"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return ""


def _lb_state(desired: DesiredCluster, found: Found) -> NodeState:
    """The external load balancer's record (as `corral up` writes it)."""
    listen = desired.load_balancer.listen if desired.load_balancer else ""
    return NodeState(LB_NODE, listen, listen, (), found.specs[LB_NODE].digests)


def rebuild(
    desired: DesiredCluster, provider: Provider, base_dir: Path, lb_host: str = ""
) -> ClusterState | None:
    """The state rebuilt from the nodes (None when no node of the file holds anything: a
    new cluster). RebuildError names what is missing and the fix."""
    found = Found(desired, provider)
    nodes = [n for n in found.specs if n != LB_NODE]
    if not nodes:
        return None
    token, initial = found.etcd()
    password = found.password()
    missing = [what for what, value in (("the etcd token (an etcd member's command line)",
                                         token), ("the admin password (a server's "
                                                  "environment)", password),
                                        ("the cluster CA certificate", found.ca_pem))
               if not value]
    if missing:
        raise RebuildError(
            f"the state file is missing and the nodes ({', '.join(nodes)}) do not hold "
            f"{' or '.join(missing)}: restore {desired.stem}.corralstate from your backup, or "
            "run `corral remove` and build the cluster again")
    pki = ClusterPki(CertPair(found.ca_pem, ""), dict(found.certs))
    pending = pending_certificates(desired, pki, lb_host=lb_host)
    if pending:
        raise RebuildError(
            f"the state file is missing; it was rebuilt from nodes {', '.join(nodes)}, but "
            f"this run needs new certificates ({', '.join(pending)}) and the cluster CA's "
            f"private key is only in the state file: restore {desired.stem}.corralstate from "
            "your backup (or run `corral up` with the cluster file as it was when the state "
            "was lost, then add the changes once the backup is back)")
    state = new_state(desired, pki, base_dir)
    members = tuple(n for n in nodes if n in initial)
    return replace(
        state, etcd_token=token, admin_password=password, admin_token=_token(desired),
        etcd_members=members, etcd_initial=initial,
        nodes={name: (_lb_state(desired, found) if name == LB_NODE else found.node_state(name))
               for name in found.specs},
    )


def refresh(desired: DesiredCluster, provider: Provider, state: ClusterState) -> tuple[
        ClusterState, list[str]]:
    """`state` with the nodes it does not record but that run services (an older backup):
    their certificates, services and etcd flags; returns the names added."""
    found = Found(desired, provider)
    added = [n for n in found.specs if n not in state.nodes and n != LB_NODE]
    if not added:
        return state, []
    _, initial = found.etcd()
    certs = dict(state.pki.certs)
    for name in added:
        for cert in (etcd_cert_name(name), server_cert_name(name)):
            if cert in found.certs and cert not in certs:
                certs[cert] = found.certs[cert]
    nodes = {**state.nodes, **{n: found.node_state(n) for n in added}}
    etcd_initial = {**{n: initial[n] for n in added if n in initial}, **state.etcd_initial}
    members = (*state.etcd_members, *(n for n in added if n in initial
                                      and n not in state.etcd_members))
    return replace(state, pki=replace(state.pki, certs=certs), nodes=nodes,
                   etcd_initial=etcd_initial, etcd_members=members), added


def recover(desired: DesiredCluster, state_dir: Path | None, progress: Progress,
            dry_run: bool = False) -> bool:
    """Before the plan: rebuild a lost state file from the nodes, add to a stale one the nodes
    it misses, and stop (RebuildError) when a rebuilt state would have to issue certificates.
    Saves nothing with `dry_run`; returns False when the dry run cannot plan (the state file
    is still to be rebuilt)."""
    from corral.install.prepare import choose_base_dir, lb_listeners
    from corral.install.providers import provider_for

    path = state_path(desired)
    recorded = load_state(path)
    base_dir, _ = choose_base_dir(desired, recorded, state_dir)
    lb_host = lb_listeners(desired).https[0]
    provider = provider_for(desired, base_dir)
    try:
        if recorded is None:
            rebuilt = rebuild(desired, provider, base_dir, lb_host)
            if rebuilt is None:
                return True
            nodes = ", ".join(n for n in rebuilt.nodes if n != LB_NODE)
            services = sum(len(n.services) for n in rebuilt.nodes.values())
            what = (f"from the live nodes {nodes} (etcd token and members, admin password"
                    f"{' and token' if rebuilt.admin_token else ''}, "
                    f"{len(rebuilt.pki.certs)} certificates, {services} services)")
            progress.info(f"{path.name} is missing: `corral up` rebuilds it {what}" if dry_run
                          else f"Rebuilt the lost {path.name} {what}", "state")
            progress.warn("the cluster CA's private key was only in the state file: this "
                          "cluster can run as it is, but new nodes or certificates need the "
                          f"state file back from your backup ({path.name})", "state")
            if dry_run:
                progress.info("run `corral up` to rebuild it; then --dry-run shows the plan",
                              "state")
                return False
            save_state(path, rebuilt)
            return True
        refreshed, added = refresh(desired, provider, recorded)
        if added:
            progress.info(f"{path.name} did not record nodes that run ({', '.join(added)}): "
                          f"{'would add' if dry_run else 'added'} them from the nodes", "state")
            if not dry_run:
                save_state(path, refreshed)
        if not refreshed.pki.ca.key_pem:
            pending = pending_certificates(desired, refreshed.pki, lb_host=lb_host)
            if pending:
                raise RebuildError(
                    f"this run needs new certificates ({', '.join(pending)}), and {path.name} "
                    "was rebuilt from the nodes without the cluster CA's private key: restore "
                    f"{path.name} from your backup, or put the cluster file back as it was")
        return True
    finally:
        provider.close()
