"""The cluster file as written: RKE's `cluster.yml` keys (and Corral's two additions) as pydantic
models. Pure shape; what the values mean and how they fit together is `corral.install.validate`.

Every key RKE knows is accepted. The ones Corral has no use for are typed `Any` and listed in
the model's `RKE_UNUSED`: they become warnings, not errors. A key RKE does not know is an error
with a "did you mean" (the config loader's). Key names are RKE's, hyphens included.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from corral.config.lb import listen_address
from corral.install.desired import DEFAULT_CLUSTER_NAME, DEFAULT_SSH_PORT


def _port(value: object) -> int:
    """RKE writes the SSH port as a string ("22"); YAML reads `22` as a number: take both."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a port number such as 22")
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{value!r} is not a port number 1-65535")
    return int(text)


def _role(value: object) -> object:
    """RKE's `role` is a list; a bare word is the usual slip."""
    if isinstance(value, str):
        raise ValueError(f"must be a list: write [{value}] or [controlplane, etcd, worker]")
    return value


def _listen(value: object) -> str:
    """`8443`, `":8443"` or `"127.0.0.1:8443"` → the text Corral keeps (`":8443"` for a port)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a port or address:port such as 127.0.0.1:8443")
    text = str(value).strip()
    if text.startswith(":"):
        text = text[1:]
    listen_address(text)  # ValueError with the accepted forms
    return f":{text}" if text.isdigit() else text


Port = Annotated[int, BeforeValidator(_port)]
Listen = Annotated[str, BeforeValidator(_listen)]


class RkeModel(BaseModel):
    """A section of the cluster file: unknown keys are errors, RKE's unused keys warnings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    RKE_UNUSED: ClassVar[tuple[str, ...]] = ()

    def unused_keys(self) -> list[str]:
        """The keys written in this section that RKE knows and Corral does not use."""
        keys = []
        for name, info in type(self).model_fields.items():
            key = info.alias or name
            if name in self.model_fields_set and key in self.RKE_UNUSED:
                keys.append(key)
        return keys


def _unused() -> Any:
    return Field(default=None, description="an RKE setting Corral does not use")


class Node(RkeModel):
    """`nodes[]`: one host (RKE's RKEConfigNode)."""

    RKE_UNUSED = (
        "nodeName", "docker_socket", "ssh_key", "ssh_cert", "ssh_cert_path", "taints",
    )

    address: str | None = Field(default=None, description="the IP address or hostname of the node")
    port: Port = Field(default=DEFAULT_SSH_PORT, description="the SSH port, 1-65535 (22)")
    internal_address: str | None = Field(
        default=None, description="the address the cluster's services use between nodes"
    )
    role: Annotated[list[str], BeforeValidator(_role)] = Field(
        default_factory=list, description="a list of controlplane, etcd, worker"
    )
    hostname_override: str | None = Field(default=None, description="the node's name (DNS-1123)")
    user: str | None = Field(default=None, description="the SSH user (usually root)")
    ssh_key_path: str | None = Field(default=None, description="the SSH private key file")
    labels: dict[str, str] = Field(default_factory=dict)
    ssh_agent_auth: bool | None = Field(
        default=None, description="also log in with the SSH agent's keys (SSH_AUTH_SOCK)"
    )
    node_name: Any = Field(default=None, alias="nodeName")
    docker_socket: Any = _unused()
    ssh_key: Any = _unused()
    ssh_cert: Any = _unused()
    ssh_cert_path: Any = _unused()
    taints: Any = _unused()


class BastionHost(RkeModel):
    """`bastion_host`: the SSH jump host the nodes are reached through (RKE's BastionHost)."""

    RKE_UNUSED = ("ssh_key", "ssh_cert", "ssh_cert_path", "ignore_proxy_env_vars")

    address: str | None = Field(default=None, description="the bastion's address or hostname")
    port: Port = Field(default=DEFAULT_SSH_PORT, description="its SSH port (22)")
    user: str | None = Field(default=None, description="the SSH user on the bastion")
    ssh_key_path: str | None = Field(default=None, description="the key for the bastion")
    ssh_agent_auth: bool | None = None
    ssh_key: Any = _unused()
    ssh_cert: Any = _unused()
    ssh_cert_path: Any = _unused()
    ignore_proxy_env_vars: Any = _unused()


class BackupConfig(RkeModel):
    """`services.etcd.backup_config`: RKE's recurring snapshots."""

    RKE_UNUSED = ("s3backupconfig", "safe_timestamp", "timeout")

    enabled: bool | None = None
    interval_hours: int | None = Field(default=None, ge=1, description="hours between snapshots")
    retention: int | None = Field(default=None, ge=1, description="snapshots to keep")
    s3backupconfig: Any = _unused()
    safe_timestamp: Any = _unused()
    timeout: Any = _unused()


class Etcd(RkeModel):
    """`services.etcd`: snapshot settings (RKE's `backup_config`, and the older `snapshot`,
    `backup`, `creation`, `retention`)."""

    RKE_UNUSED = (
        "image", "extra_args", "extra_binds", "extra_env", "win_extra_args", "win_extra_binds",
        "win_extra_env", "uid", "gid", "ca_cert", "cert", "key", "path",
    )

    snapshot: bool | None = None
    backup: bool | None = None
    creation: str | None = Field(default=None, description='time between snapshots ("12h")')
    retention: str | None = Field(default=None, description='how long snapshots stay ("72h")')
    backup_config: BackupConfig | None = None
    external_urls: list[str] | None = None
    image: Any = _unused()
    extra_args: Any = _unused()
    extra_binds: Any = _unused()
    extra_env: Any = _unused()
    win_extra_args: Any = _unused()
    win_extra_binds: Any = _unused()
    win_extra_env: Any = _unused()
    uid: Any = _unused()
    gid: Any = _unused()
    ca_cert: Any = _unused()
    cert: Any = _unused()
    key: Any = _unused()
    path: Any = _unused()


class Services(RkeModel):
    """`services`: only `etcd` means something to Corral."""

    RKE_UNUSED = ("kube-api", "kube-controller", "scheduler", "kubelet", "kubeproxy")

    etcd: Etcd = Field(default_factory=Etcd)
    kube_api: Any = Field(default=None, alias="kube-api")
    kube_controller: Any = Field(default=None, alias="kube-controller")
    scheduler: Any = _unused()
    kubelet: Any = _unused()
    kubeproxy: Any = _unused()


class PrivateRegistry(RkeModel):
    """`private_registries[]`: Corral takes the registry prefix (`url`)."""

    RKE_UNUSED = ("user", "password", "ecr_credential_plugin")

    url: str = Field(default="", description="the registry host[:port]")
    is_default: bool = False
    user: Any = _unused()
    password: Any = _unused()
    ecr_credential_plugin: Any = _unused()


class Ingress(RkeModel):
    """`ingress`: RKE's ingress controller; Corral runs its own ingress on every worker."""

    RKE_UNUSED = (
        "options", "node_selector", "extra_args", "dns_policy", "extra_envs", "extra_volumes",
        "extra_volume_mounts", "update_strategy", "http_port", "https_port", "network_mode",
        "tolerations", "default_backend", "default_http_backend_priority_class_name",
        "nginx_ingress_controller_priority_class_name", "default_ingress_class",
    )

    provider: str = Field(default="nginx", description="nginx (RKE's default) or none")
    options: Any = _unused()
    node_selector: Any = _unused()
    extra_args: Any = _unused()
    dns_policy: Any = _unused()
    extra_envs: Any = _unused()
    extra_volumes: Any = _unused()
    extra_volume_mounts: Any = _unused()
    update_strategy: Any = _unused()
    http_port: Any = _unused()
    https_port: Any = _unused()
    network_mode: Any = _unused()
    tolerations: Any = _unused()
    default_backend: Any = _unused()
    default_http_backend_priority_class_name: Any = _unused()
    nginx_ingress_controller_priority_class_name: Any = _unused()
    default_ingress_class: Any = _unused()


class LoadBalancerTls(RkeModel):
    """Corral's `load_balancer.tls`: a certificate chain and key, or `generate: true`."""

    cert: str | None = Field(default=None, description="PEM file: certificate, intermediates")
    key: str | None = Field(default=None, description="the PEM private key of that certificate")
    generate: bool = False


class LoadBalancer(RkeModel):
    """Corral's `load_balancer:` addition: `corral up` runs the external `corral lb` too."""

    listen: Listen = Field(description="the HTTPS listener, port or address:port")
    http_listen: Listen | None = Field(default=None, description="the port-80 redirect listener")
    tls: LoadBalancerTls | None = None


class ClusterFile(RkeModel):
    """The whole cluster file (RKE's RancherKubernetesEngineConfig, plus `provider`,
    `load_balancer`, `ssh_known_hosts_path` and `ssh_strict_host_key_checking`)."""

    RKE_UNUSED = (
        "network", "authentication", "authorization", "system_images", "kubernetes_version",
        "ignore_docker_version", "enable_cri_dockerd", "ssh_cert_path", "cloud_provider",
        "prefix_path", "win_prefix_path", "addon_job_timeout", "monitoring", "restore",
        "rotate_certificates", "dns", "upgrade_strategy",
    )

    nodes: list[Node] = Field(default_factory=list)
    cluster_name: str = Field(default=DEFAULT_CLUSTER_NAME, description="kubeconfig cluster")
    ssh_key_path: str | None = Field(default=None, description="SSH key of nodes naming none")
    services: Services = Field(default_factory=Services)
    private_registries: list[PrivateRegistry] = Field(default_factory=list)
    ingress: Ingress = Field(default_factory=Ingress)
    addons: str = Field(default="", description="Kubernetes YAML documents (Rancher's template)")
    addons_include: list[str] = Field(
        default_factory=list, description="files of Kubernetes YAML, relative to this file"
    )
    provider: Literal["local", "ssh"] = "ssh"
    load_balancer: LoadBalancer | None = None
    ssh_agent_auth: bool = Field(default=False, description="log in with the SSH agent's keys")
    bastion_host: BastionHost | None = None
    ssh_known_hosts_path: str | None = Field(
        default=None, description="OpenSSH known_hosts file with the nodes' host keys"
    )
    ssh_strict_host_key_checking: bool | Literal["accept-new"] = Field(
        default=True, description="true, accept-new (trust a new host once) or false (no check)"
    )
    network: Any = _unused()
    authentication: Any = _unused()
    authorization: Any = _unused()
    system_images: Any = _unused()
    kubernetes_version: Any = _unused()
    ignore_docker_version: Any = _unused()
    enable_cri_dockerd: Any = _unused()
    ssh_cert_path: Any = _unused()
    cloud_provider: Any = _unused()
    prefix_path: Any = _unused()
    win_prefix_path: Any = _unused()
    addon_job_timeout: Any = _unused()
    monitoring: Any = _unused()
    restore: Any = _unused()
    rotate_certificates: Any = _unused()
    dns: Any = _unused()
    upgrade_strategy: Any = _unused()
