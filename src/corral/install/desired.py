"""The desired state of an HA install: what the validated cluster file asks for, in the terms
Corral's services need. Built by `corral.install.validate` from RKE's cluster file and Rancher's
templates in its `addons`; consumed by the plan, the providers and the services. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["controlplane", "etcd", "worker"]
ROLES: tuple[Role, ...] = ("controlplane", "etcd", "worker")
ProviderName = Literal["local", "ssh"]
HostKeyChecking = Literal["strict", "accept-new", "off"]

# Defaults, named once (RKE's and Rancher's values where they have one)
DEFAULT_SSH_PORT = 22
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"  # OpenSSH's UserKnownHostsFile
DEFAULT_CLUSTER_NAME = "local"  # RKE's default cluster_name
DEFAULT_PROXY_CONNECT_TIMEOUT_S = 30.0  # Rancher's template annotation proxy-connect-timeout
DEFAULT_PROXY_READ_TIMEOUT_S = 1800.0  # proxy-read-timeout in Rancher's template
DEFAULT_PROXY_SEND_TIMEOUT_S = 1800.0  # proxy-send-timeout in Rancher's template
DEFAULT_SNAPSHOT_INTERVAL_HOURS = 12  # RKE's services.etcd.backup_config.interval_hours
DEFAULT_SNAPSHOT_RETENTION = 6  # RKE's services.etcd.backup_config.retention


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One host of the cluster file (`nodes[]`)."""

    name: str  # hostname_override, else address
    address: str
    internal_address: str  # internal_address, else address: what the services bind/peer on
    roles: frozenset[Role]
    user: str = "root"
    port: int = DEFAULT_SSH_PORT
    ssh_key_path: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ssh_agent_auth: bool = False  # also offer the keys of the SSH agent (SSH_AUTH_SOCK)

    def has(self, role: Role) -> bool:
        """True when the node carries `role`."""
        return role in self.roles


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How every `corral server` of the cluster runs (from the Deployment `cattle` and the
    Secret `cattle-keys-server` of Rancher's template)."""

    cacerts_pem: str = ""  # Secret cattle-keys-server `cacerts.pem`; "" when absent
    no_cacerts: bool = False  # `--no-cacerts` in the Deployment's args
    env: Mapping[str, str] = field(default_factory=dict)  # AUDIT_LEVEL, AUDIT_LOG_*, HTTP_PROXY…
    image: str = ""  # the Deployment's image as written (rancher/rancher:<version>)
    registry: str = ""  # registry prefix of the image (private registry / air gap), "" none
    version: str = ""  # the image tag


@dataclass(frozen=True, slots=True)
class IngressSettings:
    """The Ingress `cattle-ingress-http` of Rancher's template, for every node's ingress."""

    host: str  # the FQDN
    connect_timeout_s: float = DEFAULT_PROXY_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_PROXY_READ_TIMEOUT_S
    send_timeout_s: float = DEFAULT_PROXY_SEND_TIMEOUT_S
    ssl_redirect: bool = False  # the template sets nginx.ingress.kubernetes.io/ssl-redirect "false"
    tls_cert_pem: str = ""  # Secret cattle-keys-ingress tls.crt, when present
    tls_key_pem: str = ""  # Secret cattle-keys-ingress tls.key, when present


@dataclass(frozen=True, slots=True)
class LoadBalancerSpec:
    """Corral's `load_balancer:` addition: run the external `corral lb` too."""

    listen: str  # "127.0.0.1:8443" or ":443": the HTTPS listener; HTTP on `http_listen`
    http_listen: str = ""  # the port-80 redirect listener; "" = none
    cert_file: Path | None = None
    key_file: Path | None = None
    generate: bool = False  # generate a certificate for the FQDN from the cluster CA


@dataclass(frozen=True, slots=True)
class SnapshotSpec:
    """`services.etcd` snapshot settings (RKE's `backup_config` and legacy keys)."""

    enabled: bool = False
    interval_hours: int = DEFAULT_SNAPSHOT_INTERVAL_HOURS
    retention: int = DEFAULT_SNAPSHOT_RETENTION
    interval_s: float = 0.0  # `creation` exactly, in seconds (0: interval_hours)
    retention_s: float = 0.0  # `retention` exactly, in seconds (0: retention x the interval)


@dataclass(frozen=True, slots=True)
class BastionSpec:
    """RKE's `bastion_host`: the SSH jump host every node is reached through."""

    address: str
    port: int = DEFAULT_SSH_PORT
    user: str = "root"
    ssh_key_path: Path | None = None
    ssh_agent_auth: bool = False


@dataclass(frozen=True, slots=True)
class SshOptions:
    """How the SSH provider checks the nodes' host keys, and the bastion host (if any)."""

    known_hosts: Path | None = None  # None: DEFAULT_KNOWN_HOSTS
    host_key_checking: HostKeyChecking = "strict"  # accept-new: trust unknown hosts once
    bastion: BastionSpec | None = None


@dataclass(frozen=True, slots=True)
class DesiredCluster:
    """Everything `corral up` is asked to build."""

    source: Path  # the cluster file
    cluster_name: str
    provider: ProviderName
    nodes: tuple[NodeSpec, ...]
    server: ServerSettings
    ingress: IngressSettings
    load_balancer: LoadBalancerSpec | None = None
    snapshots: SnapshotSpec = field(default_factory=SnapshotSpec)
    private_registry: str = ""  # first `private_registries[].url`, "" none
    ssh: SshOptions = field(default_factory=SshOptions)
    warnings: tuple[str, ...] = ()  # RKE keys Corral does not use, ignored objects

    @property
    def fqdn(self) -> str:
        """The name clients reach the cluster by (the Ingress host)."""
        return self.ingress.host

    @property
    def stem(self) -> str:
        """The cluster file's name without extension: outputs are named after it."""
        return self.source.stem

    def nodes_with(self, role: Role) -> tuple[NodeSpec, ...]:
        """The nodes carrying `role`, in file order."""
        return tuple(node for node in self.nodes if node.has(role))
