"""What the objects of Rancher's template mean for Corral: the servers' settings (Deployment
`cattle`), and the ingress settings (Ingress `cattle-ingress-http`, its Service, annotations
and TLS Secret). Certificates are `corral.install.trust`'s."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from cryptography import x509

from corral.config.errors import Loc
from corral.install.addons import Document, Findings, RancherObjects
from corral.install.desired import (
    DEFAULT_PROXY_CONNECT_TIMEOUT_S,
    DEFAULT_PROXY_READ_TIMEOUT_S,
    DEFAULT_PROXY_SEND_TIMEOUT_S,
    IngressSettings,
    ServerSettings,
)
from corral.install.k8s import (
    DEPLOYMENT,
    INGRESS,
    SERVER_SECRET,
    Container,
    DeploymentObject,
    IngressObject,
    ServiceObject,
)
from corral.install.placeholders import placeholder_in
from corral.install.trust import ingress_tls
from corral.server.audit_settings import AuditSettings

SERVER_SSL_DIR = "/etc/rancher/ssl"  # where Rancher's server reads cacerts.pem
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"
_TIMEOUTS = {
    "proxy-connect-timeout": DEFAULT_PROXY_CONNECT_TIMEOUT_S,
    "proxy-read-timeout": DEFAULT_PROXY_READ_TIMEOUT_S,
    "proxy-send-timeout": DEFAULT_PROXY_SEND_TIMEOUT_S,
}
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
_AUDIT_ARGS = {
    "--audit-level": "AUDIT_LEVEL",
    "--audit-log-path": "AUDIT_LOG_PATH",
    "--audit-log-maxage": "AUDIT_LOG_MAXAGE",
    "--audit-log-maxbackup": "AUDIT_LOG_MAXBACKUP",
    "--audit-log-maxsize": "AUDIT_LOG_MAXSIZE",
}
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_1123_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_CONTAINERS: Loc = ("spec", "template", "spec", "containers")

Anchor = Callable[[str, str], None]
"""Reports (message, fix) at the `addons` key of the cluster file: an object is missing."""


def split_image(image: str) -> tuple[str, str]:
    """(registry prefix, version) of an image: `reg.example.com:5000/rancher/rancher:v2.0.8`
    → (`reg.example.com:5000`, `v2.0.8`); no tag means Docker's `latest`."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    first, _, rest = name.partition("/")
    registry = first if rest and ("." in first or ":" in first or first == "localhost") else ""
    return registry, tag or ("" if digest else "latest")


def server_settings(
    found: RancherObjects, ca: tuple[list[x509.Certificate], str], anchor: Anchor, out: Findings
) -> ServerSettings:
    """The settings of every `corral server` from the Deployment `cattle` (and `ca`, the
    certificates and PEM text of `cattle-keys-server`)."""
    doc = found.deployment
    if doc is None:
        anchor(
            f"the addons have no Deployment `{DEPLOYMENT}` (Rancher's server)",
            "add the Deployment of Rancher's template (with `--no-cacerts` in its args when a "
            "recognised CA signed the load balancer's certificate)",
        )
        return ServerSettings()
    deployment = out.typed_object(doc, DeploymentObject)
    picked = deployment.server_container() if deployment is not None else None
    if deployment is None or picked is None:
        if deployment is not None:
            out.errors.append(doc.problem(_CONTAINERS[:-1], "has no containers",
                                          "add the `cattle-server` container of the template"))
        return ServerSettings()
    index, container = picked
    where: Loc = (*_CONTAINERS, index)
    no_cacerts, env = _args(doc, where, container, out)
    env.update(_env(doc, where, container, out))
    _check_volumes(doc, deployment, container, found, out)
    if ca[0] and no_cacerts:
        out.errors.append(
            doc.problem(
                (*where, "args"),
                f"`--no-cacerts` asks the servers to publish no CA, but the Secret "
                f"`{SERVER_SECRET}` gives one in `cacerts.pem`",
                "keep one: `--no-cacerts` for a recognised CA, or the Secret for your own CA",
            )
        )
    registry, version = split_image(container.image) if container.image else ("", "")
    return ServerSettings(
        cacerts_pem=ca[1], no_cacerts=no_cacerts, env=env, image=container.image,
        registry=registry, version=version,
    )


def _args(
    doc: Document, where: Loc, container: Container, out: Findings
) -> tuple[bool, dict[str, str]]:
    no_cacerts, env, ignored = False, {}, []
    args = list(container.args)
    position = 0
    while position < len(args):
        arg = args[position]
        flag, has_value, value = arg.partition("=")
        if flag == "--no-cacerts":
            no_cacerts = _BOOLS.get(value.lower(), True) if has_value else True
        elif flag in _AUDIT_ARGS:
            if not has_value and position + 1 < len(args):
                position += 1
                value = args[position]
            env[_AUDIT_ARGS[flag]] = value
        else:
            ignored.append(flag if flag.startswith("-") else "…")  # values may be secrets
        position += 1
    if ignored:
        out.warnings.append(
            doc.problem((*where, "args"), f"Corral's server ignores the args {ignored}", "")
        )
    for name, value in env.items():
        try:
            AuditSettings.from_env({name: value})
        except ValueError as exc:
            out.errors.append(doc.problem((*where, "args"), str(exc), "correct the value"))
    return no_cacerts, env


def _env(doc: Document, where: Loc, container: Container, out: Findings) -> dict[str, str]:
    env: dict[str, str] = {}
    for index, item in enumerate(container.env):
        loc = (*where, "env", index)
        if item.valueFrom is not None:
            out.warnings.append(
                doc.problem((*loc, "valueFrom"), f"`{item.name}` from `valueFrom` is ignored: "
                            "Corral has no cluster objects to read it from",
                            "write the value itself in `value:`")
            )
            continue
        value = item.value or ""
        if item.name.startswith("AUDIT_") and not placeholder_in(value):
            try:
                AuditSettings.from_env({item.name: value})
            except ValueError as exc:
                out.errors.append(doc.problem((*loc, "value"), str(exc), "correct the value"))
        env[item.name] = value
    return env


def _check_volumes(
    doc: Document, deployment: DeploymentObject, container: Container,
    found: RancherObjects, out: Findings,
) -> None:
    volumes = deployment.spec.template.spec.volumes
    for index, volume in enumerate(volumes):
        name = volume.secret.secretName if volume.secret is not None else ""
        if volume.secret is not None and name not in found.secrets:
            out.errors.append(
                doc.problem(
                    ("spec", "template", "spec", "volumes", index, "secret", "secretName"),
                    f"the Secret `{name}` is not defined in the addons (a pod mounting it would "
                    "never start)",
                    "define the Secret, or remove this volume and its volumeMount",
                )
            )
    if SERVER_SECRET not in found.secrets:
        return
    mounted = {
        mount.name for mount in container.volumeMounts
        if mount.mountPath.rstrip("/") == SERVER_SSL_DIR
    }
    if not any(v.name in mounted and v.secret and v.secret.secretName == SERVER_SECRET
               for v in volumes):
        out.errors.append(
            doc.problem(
                _CONTAINERS,
                f"the Secret `{SERVER_SECRET}` is not mounted at {SERVER_SSL_DIR}, where the "
                "server reads `cacerts.pem`",
                "add the volume and volumeMount of Rancher's template, or remove the Secret",
            )
        )


def ingress_settings(
    found: RancherObjects, anchor: Anchor, out: Findings
) -> tuple[IngressSettings | None, list[x509.Certificate]]:
    """The settings of every node's ingress from the Ingress `cattle-ingress-http`, and the
    certificate chain of its TLS Secret (empty without `tls`)."""
    doc = found.ingress
    if doc is None:
        anchor(
            f"the addons have no Ingress `{INGRESS}`: Corral takes the FQDN from its host",
            "add the Ingress of Rancher's template with `host: <your FQDN>`",
        )
        return None, []
    ingress = out.typed_object(doc, IngressObject)
    if ingress is None:
        return None, []
    host = _host(doc, ingress, out)
    _check_backends(doc, ingress, found, out)
    timeouts, ssl_redirect = _annotations(doc, ingress, out)
    chain, cert_pem, key_pem = ingress_tls(doc, ingress, host, found, out)
    if ssl_redirect is None:
        ssl_redirect = bool(ingress.spec.tls)  # ingress-nginx redirects when the host has TLS
    settings = IngressSettings(
        host=host, connect_timeout_s=timeouts["proxy-connect-timeout"],
        read_timeout_s=timeouts["proxy-read-timeout"],
        send_timeout_s=timeouts["proxy-send-timeout"], ssl_redirect=ssl_redirect,
        tls_cert_pem=cert_pem, tls_key_pem=key_pem,
    )
    return settings, chain


def _host(doc: Document, ingress: IngressObject, out: Findings) -> str:
    rules = ingress.spec.rules
    if not rules:
        out.errors.append(doc.problem(("spec",), "has no `rules`: Corral takes the FQDN from "
                                      "the rule's host", "add the rule of Rancher's template"))
        return ""
    host = rules[0].host or ""
    for index, rule in enumerate(rules):
        loc = ("spec", "rules", index, "host")
        if not rule.host:
            out.errors.append(doc.problem(loc, "the rule has no host: Corral serves one FQDN",
                                          "write `host: <your FQDN>`"))
        elif rule.host != host:
            out.errors.append(doc.problem(loc, f"a second host {rule.host!r} (the first rule's "
                                          f"is {host!r}): Corral serves one FQDN",
                                          "keep one host in the rules"))
    problem = fqdn_problem(host)
    if host and problem is not None:
        out.errors.append(doc.problem(("spec", "rules", 0, "host"), *problem))
    return host


def fqdn_problem(host: str) -> tuple[str, str] | None:
    """(message, fix) when `host` cannot be the Ingress host; None when it can (or is a
    placeholder, reported elsewhere)."""
    if placeholder_in(host):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return (f"{host} is an IP address; an Ingress host must be a DNS name",
                "use the name whose DNS A record points at the load balancer")
    if host.startswith("*."):
        return ("a wildcard host: Corral serves one FQDN", "write the one name clients use")
    if len(host) > 253 or not DNS_1123_SUBDOMAIN.fullmatch(host):
        return (f"{host!r} is not a valid host name (lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit)", "correct the name")
    return None


def _check_backends(
    doc: Document, ingress: IngressObject, found: RancherObjects, out: Findings
) -> None:
    for r, rule in enumerate(ingress.spec.rules):
        for p, path in enumerate(rule.http.paths if rule.http is not None else []):
            loc = ("spec", "rules", r, "http", "paths", p, "backend")
            name, port = path.backend.target()
            service_doc = found.services.get(name)
            if service_doc is None:
                out.errors.append(doc.problem(loc, f"the backend Service `{name}` is not "
                                              "defined in the addons",
                                              "define it (Rancher's `cattle-service`) or name "
                                              "the Service that is"))
                continue
            out.used.add(service_doc.label)
            service = out.typed_object(service_doc, ServiceObject)
            if service is None:
                continue
            ports: set[int | str] = {item.port for item in service.spec.ports}
            ports |= {item.name for item in service.spec.ports if item.name}
            if port not in ports:
                out.errors.append(doc.problem(loc, f"port {port!r} is not a port of the "
                                              f"Service `{name}` ({sorted(map(str, ports))})",
                                              "use one of the Service's ports (80 in Rancher's "
                                              "template)"))


def _annotations(
    doc: Document, ingress: IngressObject, out: Findings
) -> tuple[dict[str, float], bool | None]:
    timeouts = dict(_TIMEOUTS)
    ssl_redirect: bool | None = None
    unused = []
    for key, value in ingress.metadata.annotations.items():
        loc = ("metadata", "annotations", key)
        name = key.removeprefix(NGINX_PREFIX) if key.startswith(NGINX_PREFIX) else ""
        if name in _TIMEOUTS:
            if value.strip().isdigit() and int(value) > 0:
                timeouts[name] = float(int(value))
            else:
                out.errors.append(doc.problem(loc, f"{value!r} is not a number of seconds",
                                              'write whole seconds in quotes, such as "1800"'))
        elif name == "ssl-redirect":
            ssl_redirect = _BOOLS.get(value.strip().lower())
            if ssl_redirect is None:
                out.errors.append(doc.problem(loc, f"{value!r} is not true or false",
                                              'write "false" (as the template) or "true"'))
        else:
            unused.append(key)
    if unused:
        out.warnings.append(doc.problem(("metadata", "annotations"),
                                        f"Corral's ingress does not use the annotations {unused}",
                                        ""))
    return timeouts, ssl_redirect


