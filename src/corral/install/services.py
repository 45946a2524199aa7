"""The service each role runs on a node, as a command line, an environment and files.

    etcd         → an etcd member (the etcd binary), peer and client mutual TLS from the cluster CA
    controlplane → `corral server` on the etcd cluster (the Deployment's args and env, the
                   Secret's cacerts.pem in its --tls-dir), one per controlplane node, active-active
    worker       → `corral ingress` on the node's port 80, to every node's healthy server

Pure: a `ServiceSpec` is data, and its `digest` changes exactly when the service must be
restarted, so the plan compares digests with the state file's.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from corral.config.ingress_load import ingress_yaml
from corral.install.cluster_pki import (
    ETCD_CLIENT,
    LB_CERT,
    ClusterPki,
    etcd_cert_name,
    server_cert_name,
)
from corral.install.desired import DesiredCluster, NodeSpec
from corral.install.ingress_file import ingress_config_for
from corral.install.providers.base import LOCAL_ETCD_BINARY, FileSpec, NodePaths

ETCD_BINARY = LOCAL_ETCD_BINARY  # the local provider's; the SSH provider's is in its release
ETCD_CLIENT_PORT = 2379  # etcd's own defaults
ETCD_PEER_PORT = 2380
SERVER_HTTP_PORT = 8080  # the node's address:80 belongs to its ingress
SERVER_HTTPS_PORT = 8443
DEFAULT_AUDIT_LOG_PATH = "/var/log/auditlog/corral-api-audit.log"
BOOTSTRAP_PASSWORD_ENV = "CORRAL_BOOTSTRAP_PASSWORD"
SECRET_ENV = frozenset({BOOTSTRAP_PASSWORD_ENV})

ServiceName = Literal["etcd", "server", "ingress", "lb"]
PHASES: tuple[ServiceName, ...] = ("etcd", "server", "ingress", "lb")
ROLE_OF: dict[ServiceName, str] = {"etcd": "etcd", "server": "controlplane", "ingress": "worker"}

# relative paths inside a node's directory
CA_FILE = "pki/ca.pem"
ETCD_CERT, ETCD_KEY = "pki/etcd.pem", "pki/etcd-key.pem"
CLIENT_CERT, CLIENT_KEY = "pki/etcd-client.pem", "pki/etcd-client-key.pem"
SERVER_CERT, SERVER_KEY, SERVER_CACERTS = (
    "server-tls/cert.pem",
    "server-tls/key.pem",
    "server-tls/cacerts.pem",
)
LB_CERT_FILE, LB_KEY_FILE = "pki/lb.pem", "pki/lb-key.pem"
INGRESS_FILE = "ingress/ingress.yml"


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """How the supervisor and `corral up` tell that a service works: `http`/`https` GET of
    `url` answering 200 (and `expect` in the body when given), or `tcp` connect to `url`
    (`host:port`)."""

    kind: Literal["http", "https", "tcp"]
    url: str
    expect: str = ""
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    server_name: str = ""  # SNI and Host when not the URL's host (the FQDN at the lb)

    def to_json(self) -> dict[str, str]:
        """The supervisor spec's form."""
        return {
            "kind": self.kind,
            "url": self.url,
            "expect": self.expect,
            "cafile": self.cafile,
            "certfile": self.certfile,
            "keyfile": self.keyfile,
            "serverName": self.server_name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthProbe:
        """Parse the supervisor spec's form."""
        kind = str(data["kind"])
        if kind not in ("http", "https", "tcp"):
            raise ValueError(f"unknown probe kind {kind!r}")
        return cls(
            kind,  # type: ignore[arg-type]
            str(data["url"]),
            str(data.get("expect", "")),
            str(data.get("cafile", "")),
            str(data.get("certfile", "")),
            str(data.get("keyfile", "")),
            str(data.get("serverName", "")),
        )


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service of one node: what runs, with which files, and how it is checked."""

    name: ServiceName
    argv: tuple[str, ...]
    env: Mapping[str, str]
    health: HealthProbe
    files: Mapping[str, FileSpec] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)  # digests of files outside the node

    @property
    def digest(self) -> str:
        """sha256 over everything that, changed, needs the service restarted."""
        data = {
            "name": self.name,
            "argv": list(self.argv),
            "env": dict(sorted(self.env.items())),
            "files": {
                path: [hashlib.sha256(f.content).hexdigest(), f.mode]
                for path, f in sorted(self.files.items())
            },
            "inputs": dict(sorted(self.inputs.items())),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The command line as shown in the plan (secrets never appear: they are in env)."""
        return " ".join(self.argv)


@dataclass(frozen=True)
class ServiceContext:
    """What every service of the cluster is built from."""

    desired: DesiredCluster
    pki: ClusterPki
    paths: Callable[[str], NodePaths]  # node name → its directories
    admin_password: str
    etcd_token: str
    etcd_members: tuple[str, ...]  # node names of the etcd cluster's initial members
    trusted_proxies: tuple[str, ...]
    server_url: str  # https://FQDN[:port], what clients use
    lb_root: Path = Path()  # the external load balancer's directory
    corral: tuple[str, ...] = (sys.executable, "-m", "corral.cli.main")  # on the nodes
    etcd_binary: str = ETCD_BINARY
    lb_corral: tuple[str, ...] = (sys.executable, "-m", "corral.cli.main")  # on this machine
    # node → (--initial-cluster, --initial-cluster-state) it was started with: a member keeps
    # its flags; one joining a running cluster gets the members then and "existing"
    etcd_initial: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def member_name(node: str) -> str:
    """The etcd member name of a node (RKE's `etcd-<host>`)."""
    return f"etcd-{node}"


def _node(desired: DesiredCluster, name: str) -> NodeSpec:
    for node in desired.nodes:
        if node.name == name:
            return node
    raise KeyError(name)


def etcd_client_url(node: NodeSpec) -> str:
    """The client URL of `node`'s etcd member."""
    return f"https://{_host(node.internal_address)}:{ETCD_CLIENT_PORT}"


def etcd_peer_url(node: NodeSpec) -> str:
    """The peer URL of `node`'s etcd member."""
    return f"https://{_host(node.internal_address)}:{ETCD_PEER_PORT}"


def etcd_endpoints(desired: DesiredCluster) -> tuple[str, ...]:
    """Every etcd member's client URL, in file order."""
    return tuple(etcd_client_url(node) for node in desired.nodes_with("etcd"))


def server_endpoint(node: NodeSpec) -> str:
    """host:port of `node`'s `corral server` plain-HTTP listener (what the ingresses use)."""
    return f"{_host(node.internal_address)}:{SERVER_HTTP_PORT}"


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _pem_files(ctx: ServiceContext, cert_name: str, cert: str, key: str) -> dict[str, FileSpec]:
    pair = ctx.pki.get(cert_name)
    return {
        CA_FILE: FileSpec(ctx.pki.ca.cert_pem.encode(), 0o644),
        cert: FileSpec(pair.cert_pem.encode(), 0o644),
        key: FileSpec(pair.key_pem.encode(), 0o600),
    }


def client_files(ctx: ServiceContext) -> dict[str, FileSpec]:
    """The etcd client certificate every node's supervisor and server use."""
    return _pem_files(ctx, ETCD_CLIENT, CLIENT_CERT, CLIENT_KEY)


def etcd_service(ctx: ServiceContext, node: NodeSpec) -> ServiceSpec:
    """The etcd member of `node`: the initial cluster is every etcd node of the state."""
    paths = ctx.paths(node.name)
    names = [name for name in ctx.etcd_members if any(n.name == name for n in ctx.desired.nodes)]
    joining = node.name not in ctx.etcd_members
    members = [_node(ctx.desired, name) for name in [*names, *([node.name] if joining else [])]]
    initial = ",".join(f"{member_name(m.name)}={etcd_peer_url(m)}" for m in members)
    initial, cluster_state = ctx.etcd_initial.get(
        node.name, (initial, "existing" if joining else "new"))
    ca, cert, key = (str(paths.file(p)) for p in (CA_FILE, ETCD_CERT, ETCD_KEY))
    argv = (
        ctx.etcd_binary,
        f"--name={member_name(node.name)}",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={etcd_client_url(node)}",
        f"--advertise-client-urls={etcd_client_url(node)}",
        f"--listen-peer-urls={etcd_peer_url(node)}",
        f"--initial-advertise-peer-urls={etcd_peer_url(node)}",
        f"--initial-cluster={initial}",
        f"--initial-cluster-state={cluster_state}",
        f"--initial-cluster-token={ctx.etcd_token}",
        "--client-cert-auth",
        f"--trusted-ca-file={ca}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--peer-client-cert-auth",
        f"--peer-trusted-ca-file={ca}",
        f"--peer-cert-file={cert}",
        f"--peer-key-file={key}",
        "--logger=zap",
        "--log-level=warn",
    )
    client = client_files(ctx)
    probe = HealthProbe(
        "https",
        f"{etcd_client_url(node)}/health",
        expect='"health":"true"',
        cafile=ca,
        certfile=str(paths.file(CLIENT_CERT)),
        keyfile=str(paths.file(CLIENT_KEY)),
    )
    files = {**client, **_pem_files(ctx, etcd_cert_name(node.name), ETCD_CERT, ETCD_KEY)}
    return ServiceSpec("etcd", _with_snapshots(ctx, node, argv), {}, probe, files)


def _with_snapshots(ctx: ServiceContext, node: NodeSpec, argv: tuple[str, ...]) -> tuple[str, ...]:
    """The member's command line, run by `corral etcd snapshot-loop` when `services.etcd` asks
    for recurring snapshots (corral.install.etcd_snapshot_loop); unchanged otherwise."""
    from corral.install.etcd_snapshot_files import node_snapshot_dir, policy

    wanted = policy(ctx.desired.snapshots)
    if not wanted.enabled:
        return argv
    paths = ctx.paths(node.name)
    return (
        *ctx.corral, "etcd", "snapshot-loop",
        "--snapshot-dir", str(node_snapshot_dir(paths)),
        "--creation", _seconds(wanted.interval_s),
        "--retention", _seconds(wanted.retention_s),
        "--etcdctl", str(Path(ctx.etcd_binary).with_name("etcdctl")),
        "--endpoint", etcd_client_url(node),
        "--cacert", str(paths.file(CA_FILE)),
        "--cert", str(paths.file(CLIENT_CERT)),
        "--key", str(paths.file(CLIENT_KEY)),
        "--", *argv,
    )


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


def published_cacerts(ctx: ServiceContext) -> tuple[str, bool]:
    """(cacerts.pem to give the servers, --no-cacerts): the Secret's CA when the file has one;
    the cluster CA when it issues the load balancer's certificate (tls generate); else none
    with --no-cacerts as the Deployment says; else ("", False): the servers generate and
    share their own CA, as Rancher does without either."""
    settings = ctx.desired.server
    if settings.cacerts_pem:
        return settings.cacerts_pem, False
    spec = ctx.desired.load_balancer
    if spec is not None and spec.generate:
        return ctx.pki.ca.cert_pem, False
    return "", settings.no_cacerts


def server_service(ctx: ServiceContext, node: NodeSpec) -> ServiceSpec:
    """`corral server` of `node`, on the etcd cluster, behind the ingresses."""
    paths = ctx.paths(node.name)
    cacerts, no_cacerts = published_cacerts(ctx)
    files = client_files(ctx)
    if cacerts or no_cacerts:  # a serving certificate from the cluster CA for the HTTPS port
        pair = ctx.pki.get(server_cert_name(node.name))
        files[SERVER_CERT] = FileSpec(pair.cert_pem.encode(), 0o644)
        files[SERVER_KEY] = FileSpec(pair.key_pem.encode(), 0o600)
    if cacerts:
        files[SERVER_CACERTS] = FileSpec(cacerts.encode(), 0o644)
    argv = [
        *ctx.corral,
        "server",
        "--bind-address", node.internal_address,
        "--http-listen-port", str(SERVER_HTTP_PORT),
        "--https-listen-port", str(SERVER_HTTPS_PORT),
        "--data-dir", str(paths.server_data),
        "--tls-dir", str(paths.server_tls),
        "--server-url", ctx.server_url,
        "--etcd-servers", ",".join(etcd_endpoints(ctx.desired)),
        "--etcd-cafile", str(paths.file(CA_FILE)),
        "--etcd-certfile", str(paths.file(CLIENT_CERT)),
        "--etcd-keyfile", str(paths.file(CLIENT_KEY)),
    ]
    if no_cacerts:
        argv.append("--no-cacerts")
    env = dict(ctx.desired.server.env)
    if ctx.desired.server.image:  # Rancher's names: an image tag change rolls the servers
        env["CATTLE_SERVER_IMAGE"] = ctx.desired.server.image
        env["CATTLE_SERVER_VERSION"] = ctx.desired.server.version
    audit_path = env.get("AUDIT_LOG_PATH") or DEFAULT_AUDIT_LOG_PATH
    slash = "/" if audit_path.endswith("/") else ""  # a directory stays one
    env["AUDIT_LOG_PATH"] = f"{paths.inside(audit_path)}{slash}"
    env[BOOTSTRAP_PASSWORD_ENV] = ctx.admin_password
    env["PYTHONUNBUFFERED"] = "1"
    probe = HealthProbe("http", f"http://{server_endpoint(node)}/healthz")
    return ServiceSpec("server", tuple(argv), env, probe, files)


def ingress_service(ctx: ServiceContext, node: NodeSpec) -> ServiceSpec:
    """`corral ingress` of `node`: Host=FQDN → every controlplane node's server."""
    paths = ctx.paths(node.name)
    upstreams = [server_endpoint(n) for n in ctx.desired.nodes_with("controlplane")]
    config = ingress_config_for(ctx.desired, node, upstreams, ctx.trusted_proxies)
    text = ingress_yaml(config).encode()
    argv = (*ctx.corral, "ingress", "--config", str(paths.file(INGRESS_FILE)))
    address, port = config.address
    shown = address if address != "0.0.0.0" else node.internal_address
    # through the ingress to a server, as the external load balancer checks it (a TCP connect
    # would also succeed on something else holding the port)
    probe = HealthProbe("http", f"http://{_host(shown)}:{port}/healthz", expect="ok",
                        server_name=ctx.desired.fqdn)
    return ServiceSpec(
        "ingress", argv, {"PYTHONUNBUFFERED": "1"}, probe, {INGRESS_FILE: FileSpec(text, 0o644)}
    )


def node_services(ctx: ServiceContext, node: NodeSpec) -> tuple[ServiceSpec, ...]:
    """Every service of `node`, in phase order (etcd, server, ingress)."""
    services: list[ServiceSpec] = []
    if node.has("etcd"):
        services.append(etcd_service(ctx, node))
    if node.has("controlplane"):
        services.append(server_service(ctx, node))
    if node.has("worker"):
        services.append(ingress_service(ctx, node))
    return tuple(services)


def lb_files(ctx: ServiceContext) -> dict[str, FileSpec]:
    """The load balancer's certificate from the cluster CA (tls generate), else nothing."""
    spec = ctx.desired.load_balancer
    if spec is None or not spec.generate:
        return {}
    pair = ctx.pki.get(LB_CERT)
    chain = pair.cert_pem + ctx.pki.signing_ca_pem()  # leaf first, then the CA (Rancher's)
    return {
        LB_CERT_FILE: FileSpec(chain.encode(), 0o644),
        LB_KEY_FILE: FileSpec(pair.key_pem.encode(), 0o600),
    }


def lb_trust_files(ctx: ServiceContext) -> dict[str, FileSpec]:
    """The CA the load balancer's certificate chains to, when Corral knows it (for its probe)."""
    cacerts, _ = published_cacerts(ctx)
    return {CA_FILE: FileSpec(cacerts.encode(), 0o644)} if cacerts else {}


def lb_service(ctx: ServiceContext, config_path: Path, config_text: bytes) -> ServiceSpec:
    """`corral lb` on the cluster's `<stem>.lb.yml`; the probe is `GET /ping` through it with
    the FQDN as SNI and Host (so a listener whose workers cannot serve is not healthy)."""
    spec = ctx.desired.load_balancer
    if spec is None:
        raise ValueError("the cluster file has no load_balancer")
    address, port = lb_address(spec.listen)
    shown = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    # the configuration's text is not an input: a changed <stem>.lb.yml is reloaded, not
    # restarted (corral up reloads it when it changes: no connection is dropped)
    inputs: dict[str, str] = {}
    for extra in (spec.cert_file, spec.key_file):
        if extra is not None:
            inputs[str(extra)] = _file_digest(extra)
    trust = lb_trust_files(ctx)
    root = ctx.lb_root
    probe = HealthProbe(
        "https",
        f"https://{_host(shown)}:{port}/ping",
        expect="pong",
        cafile=str(root / CA_FILE) if trust else "",
        server_name=ctx.desired.fqdn,
    )
    return ServiceSpec(
        "lb",
        (*ctx.lb_corral, "lb", "--config", str(config_path)),
        {"PYTHONUNBUFFERED": "1"},
        probe,
        {**lb_files(ctx), **trust},
        inputs,
    )


def lb_address(listen: str) -> tuple[str, int]:
    """`load_balancer.listen` (`127.0.0.1:8443`, `:443`, `443`) → (bind address, port)."""
    from corral.config.ingress import ingress_listen

    return ingress_listen(listen)


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"
