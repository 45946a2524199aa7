"""Typed models of the Kubernetes objects in Rancher's template, as far as Corral reads them
(every other key is accepted and ignored, as the objects are Kubernetes', not Corral's), and the
names the template gives them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SERVER_SECRET = "cattle-keys-server"  # Secret with `cacerts.pem` (Rancher's self-signed template)
INGRESS_SECRET = "cattle-keys-ingress"  # Secret with `tls.crt`/`tls.key`
SERVICE = "cattle-service"
INGRESS = "cattle-ingress-http"
DEPLOYMENT = "cattle"
SERVER_CONTAINER = "cattle-server"


class _K8s(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Meta(_K8s):
    """`metadata`: what every object has."""

    name: str = ""
    namespace: str = ""


class IngressMeta(Meta):
    """`metadata` of the Ingress: its annotations are ingress-nginx's settings."""

    annotations: dict[str, str] = Field(default_factory=dict)


class Head(_K8s):
    """What every Kubernetes object has."""

    apiVersion: str = Field(default="", description="the object's API version, such as v1")
    kind: str = Field(default="", description="the object's kind, such as Secret")
    metadata: Meta = Field(default_factory=Meta)


class SecretObject(_K8s):
    """A Secret: `data` values are base64, `stringData` values plain."""

    type: str = "Opaque"
    data: dict[str, str | None] = Field(default_factory=dict)
    stringData: dict[str, str | None] = Field(default_factory=dict)


class ServicePort(_K8s):
    """`spec.ports[]` of a Service."""

    port: int
    name: str = ""


class ServiceSpec(_K8s):
    """`spec` of a Service."""

    ports: list[ServicePort] = Field(default_factory=list)


class ServiceObject(_K8s):
    """A Service (the Ingress's backend)."""

    spec: ServiceSpec = Field(default_factory=ServiceSpec)


class BackendPort(_K8s):
    """`backend.service.port` (networking.k8s.io/v1)."""

    number: int | None = None
    name: str | None = None


class BackendService(_K8s):
    """`backend.service` (networking.k8s.io/v1)."""

    name: str = ""
    port: BackendPort = Field(default_factory=BackendPort)


class Backend(_K8s):
    """An Ingress backend: `serviceName`/`servicePort` (extensions/v1beta1, as in Rancher's
    templates) or `service: {name, port}` (networking.k8s.io/v1)."""

    serviceName: str | None = None
    servicePort: int | str | None = None
    service: BackendService | None = None

    def target(self) -> tuple[str, int | str | None]:
        """(service name, port number or name) whichever shape is written."""
        if self.service is not None:
            return self.service.name, self.service.port.number or self.service.port.name
        return self.serviceName or "", self.servicePort


class HttpPath(_K8s):
    """`rules[].http.paths[]`."""

    path: str = ""
    backend: Backend = Field(default_factory=Backend)


class RuleHttp(_K8s):
    """`rules[].http`."""

    paths: list[HttpPath] = Field(default_factory=list)


class Rule(_K8s):
    """`spec.rules[]`: the host is Rancher's FQDN."""

    host: str | None = None
    http: RuleHttp | None = None


class IngressTls(_K8s):
    """`spec.tls[]`."""

    secretName: str | None = None
    hosts: list[str] = Field(default_factory=list)


class IngressSpec(_K8s):
    """`spec` of an Ingress."""

    rules: list[Rule] = Field(default_factory=list)
    tls: list[IngressTls] = Field(default_factory=list)


class IngressObject(_K8s):
    """The Ingress `cattle-ingress-http`."""

    metadata: IngressMeta = Field(default_factory=IngressMeta)
    spec: IngressSpec = Field(default_factory=IngressSpec)


class EnvVar(_K8s):
    """`containers[].env[]`."""

    name: str
    value: str | None = None
    valueFrom: Any = None


class VolumeMount(_K8s):
    """`containers[].volumeMounts[]`."""

    name: str = ""
    mountPath: str = ""


class Container(_K8s):
    """`containers[]` of the Deployment."""

    name: str = ""
    image: str = ""
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    volumeMounts: list[VolumeMount] = Field(default_factory=list)


class SecretVolume(_K8s):
    """`volumes[].secret`."""

    secretName: str = ""


class Volume(_K8s):
    """`volumes[]` of the Deployment's pod."""

    name: str = ""
    secret: SecretVolume | None = None


class PodSpec(_K8s):
    """`spec.template.spec`."""

    containers: list[Container] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)


class PodTemplate(_K8s):
    """`spec.template`."""

    spec: PodSpec = Field(default_factory=PodSpec)


class DeploymentSpec(_K8s):
    """`spec` of the Deployment."""

    template: PodTemplate = Field(default_factory=PodTemplate)


class DeploymentObject(_K8s):
    """The Deployment `cattle` (Rancher's server)."""

    spec: DeploymentSpec = Field(default_factory=DeploymentSpec)

    def server_container(self) -> tuple[int, Container] | None:
        """(index, container) of `cattle-server`, else the first container; None without any."""
        containers = self.spec.template.spec.containers
        for index, container in enumerate(containers):
            if container.name == SERVER_CONTAINER:
                return index, container
        return (0, containers[0]) if containers else None
