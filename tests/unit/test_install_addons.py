"""The Kubernetes objects of `addons`/`addons_include`: what Corral reads from Rancher's template
objects, the certificates they carry, and lines inside `addons` that are the cluster file's."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path

import pytest
import trustme

from corral.install.desired import DesiredCluster
from corral.install.rancher import split_image
from corral.install.validate import ClusterFileError, load_cluster_file

NODES = """\
provider: local
nodes:
  - {address: 127.0.1.1, role: [controlplane, etcd, worker]}
  - {address: 127.0.1.2, role: [controlplane, etcd, worker]}
  - {address: 127.0.1.3, role: [controlplane, etcd, worker]}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  namespace: cattle-system
  name: cattle-service
spec:
  ports:
  - port: 80
    targetPort: 80
    name: http
"""
INGRESS = """\
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  namespace: cattle-system
  name: cattle-ingress-http
  annotations:
    nginx.ingress.kubernetes.io/proxy-connect-timeout: "30"
    nginx.ingress.kubernetes.io/proxy-read-timeout: "1800"
    nginx.ingress.kubernetes.io/proxy-send-timeout: "1800"
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  rules:
  - host: rancher.example.com
    http:
      paths:
      - backend:
          serviceName: cattle-service
          servicePort: 80
"""
DEPLOYMENT = """\
kind: Deployment
apiVersion: extensions/v1beta1
metadata:
  namespace: cattle-system
  name: cattle
spec:
  replicas: 1
  template:
    spec:
      containers:
      - image: rancher/rancher:latest
        name: cattle-server
"""
MOUNT = """\
        volumeMounts:
        - mountPath: /etc/rancher/ssl
          name: cattle-keys-volume
          readOnly: true
      volumes:
      - name: cattle-keys-volume
        secret:
          defaultMode: 420
          secretName: cattle-keys-server
"""
NAMESPACE = "kind: Namespace\napiVersion: v1\nmetadata:\n  name: cattle-system\n"


def b64(data: bytes) -> str:
    """One-line base64, as `base64 -w0` prints it."""
    return base64.b64encode(data).decode()


def secret(name: str, **data: str) -> str:
    """A Secret document with `data` (keys given with _ for .: cacerts_pem → cacerts.pem)."""
    rows = "".join(f"  {key.replace('_', '.')}: {value}\n" for key, value in data.items())
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n"
            f"  namespace: cattle-system\ntype: Opaque\ndata:\n{rows}")


def cluster(*docs: str, top: str = "") -> str:
    """A cluster file: three local nodes, `top`, then `docs` as the addons block."""
    body = "---\n" + "---\n".join(docs)
    return NODES + top + "addons: |-\n" + textwrap.indent(body, "  ")


def line(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth line containing `needle`."""
    return [n for n, row in enumerate(text.split("\n"), start=1) if needle in row][nth - 1]


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests run in tmp_path so problems start with `c.yml:`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str) -> DesiredCluster:
    """Write c.yml and load it."""
    Path("c.yml").write_text(text)
    return load_cluster_file("c.yml")


def problems(text: str) -> list[str]:
    """The rendered problems of c.yml."""
    Path("c.yml").write_text(text)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster_file("c.yml")
    return [str(problem) for problem in caught.value.problems]


def assert_problem(found: list[str], text: str, needle: str, expected: str, nth: int = 1) -> None:
    """Some problem is exactly at the line of `needle` and starts with `expected`."""
    want = f"c.yml:{line(text, needle, nth)}: {expected}"
    assert any(problem.startswith(want) for problem in found), (want, found)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A CA for the certificates of these tests."""
    return trustme.CA()


def test_minimal_addons_give_server_and_ingress_settings(work: Path) -> None:
    """Service, Ingress and Deployment as in the template: FQDN, timeouts, no redirect."""
    desired = load(cluster(SERVICE, INGRESS, DEPLOYMENT))
    ingress = desired.ingress
    assert (ingress.host, ingress.connect_timeout_s, ingress.read_timeout_s,
            ingress.send_timeout_s, ingress.ssl_redirect) == (
        "rancher.example.com", 30.0, 1800.0, 1800.0, False)
    assert (desired.server.image, desired.server.version, desired.server.registry) == (
        "rancher/rancher:latest", "latest", "")
    assert desired.warnings == ()


def test_lines_inside_addons_are_lines_of_the_cluster_file(work: Path) -> None:
    """A duplicate key, a wrong type and a placeholder inside `addons` name their real lines."""
    text = cluster(SERVICE, INGRESS.replace("servicePort: 80", "servicePort: [80]")
                   .replace("  namespace: cattle-system\n", "  namespace: a\n  namespace: b\n"),
                   DEPLOYMENT.replace("latest", "<VERSION>"))
    found = problems(text)
    assert_problem(found, text, "namespace: b",
                   "addons[document 2].metadata.namespace: duplicate key `namespace`")
    assert_problem(found, text, "<VERSION>", "addons[Deployment/cattle].spec.template.spec."
                   "containers[0].image: the template's placeholder `<VERSION>` is not replaced")
    text = cluster(SERVICE, INGRESS.replace("servicePort: 80", "servicePort: [80]"), DEPLOYMENT)
    assert_problem(problems(text), text, "servicePort: [80]",
                   "addons[Ingress/cattle-ingress-http].spec.rules[0].http.paths[0].backend."
                   "servicePort: ")


def test_yaml_errors_and_tabs_inside_addons_name_their_lines(work: Path) -> None:
    """A syntax error and a tab-indented line inside `addons` point at the cluster file's line."""
    text = cluster(SERVICE, INGRESS.replace("    http:\n", "    http: [\n"), DEPLOYMENT)
    found = problems(text)
    assert len(found) == 1 and "YAML syntax error" in found[0], found
    assert line(text, "http: [") <= int(found[0].split(":")[1]) <= line(text, "http: [") + 4
    text = cluster(SERVICE, INGRESS.replace("      paths:\n", "    \tpaths:\n"), DEPLOYMENT)
    assert_problem(problems(text), text, "\tpaths:", "addons[document 2]: this line is indented "
                   "with a tab, and YAML allows only spaces")


INGRESS_TLS = "  tls:\n  - secretName: cattle-keys-ingress\n    hosts: [rancher.example.com]\n"
PROXY_ENV = '        env:\n        - {name: HTTP_PROXY, value: "http://your_proxy_address:port"}\n'


@pytest.mark.parametrize(
    ("docs", "placeholders"),
    [
        ([secret("cattle-keys-ingress", tls_crt="<BASE64_CRT>", tls_key="<BASE64_KEY>"),
          SERVICE, INGRESS + INGRESS_TLS, DEPLOYMENT + "        args: [--no-cacerts]\n"],
         ["<BASE64_CRT>", "<BASE64_KEY>"]),
        ([SERVICE, INGRESS.replace("rancher.example.com", "HOSTNAME.DOMAIN.COM"),
          DEPLOYMENT + PROXY_ENV], ["HOSTNAME.DOMAIN.COM", "your_proxy_address"]),
        ([SERVICE, INGRESS.replace("rancher.example.com", "<IP_ADDRESS_1>"), DEPLOYMENT],
         ["<IP_ADDRESS_1>"]),
    ],
    ids=["ingress secret", "guide's FQDN and a proxy", "bracketed guide name"],
)
def test_placeholders_in_addons_are_named_alone(
    work: Path, docs: list[str], placeholders: list[str]
) -> None:
    """Each placeholder is one problem at its line, and nothing else is reported about it."""
    text = cluster(*docs)
    found = problems(text)
    assert found == [
        f"c.yml:{line(text, name)}: " + next(p.split(": ", 1)[1] for p in found if name in p)
        for name in placeholders
    ]
    assert all(f"placeholder `{name}` is not replaced" in "\n".join(found)
               for name in placeholders)




@pytest.mark.parametrize(
    ("layout", "needle", "expected"),
    [
        ("more indented", "    {rest}", "addons[Secret/cattle-keys-server].data.cacerts.pem: the "
         "base64 in `cacerts.pem` contains line breaks or spaces (Rancher's HA guide: make sure "
         "the base64 is on one line) — fix: encode with `base64 -w0 FILE`"),
        ("same indent", "  {rest}", "cacerts.pem: the base64 of `cacerts.pem` goes on over line"),
        ("block scalar", "    {rest}", "addons[Secret/cattle-keys-server].data.cacerts.pem: the "
         "base64 in `cacerts.pem` contains line breaks"),
    ],
)
def test_base64_broken_over_lines_is_named(
    work: Path, ca: trustme.CA, layout: str, needle: str, expected: str
) -> None:
    """The guide's warning: base64 wrapped onto a second line (three ways of writing it)."""
    encoded = b64(ca.cert_pem.bytes())
    first, rest = encoded[:76], encoded[76:]
    value = {"more indented": f"{first}\n    {rest}", "same indent": f"{first}\n  {rest}",
             "block scalar": f"|\n    {first}\n    {rest}"}[layout]
    text = cluster(secret("cattle-keys-server", cacerts_pem=value), SERVICE, INGRESS,
                   DEPLOYMENT + MOUNT)
    found = problems(text)
    where = needle.format(rest=rest[:20])
    hit = line(text, where) if layout == "same indent" else line(
        text, "cacerts.pem:" if layout != "block scalar" else "cacerts.pem: |")
    want = f"c.yml:{hit}: {expected}"
    assert any(problem.startswith(want) for problem in found), (want, found)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not*base64", "is not valid base64"),
        ("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "holds CERTIFICATE but no CERTIFICATE block"),
        (b64(b"hello world, not a certificate"), "decodes to something that is not PEM"),
        ('""', "`cacerts.pem` is empty"),
    ],
)
def test_cacerts_that_are_not_a_pem_ca(work: Path, value: str, expected: str) -> None:
    """cacerts.pem must be base64 of a PEM certificate."""
    text = cluster(secret("cattle-keys-server", cacerts_pem=value), SERVICE, INGRESS,
                   DEPLOYMENT + MOUNT)
    found = problems(text)
    assert any(f"c.yml:{line(text, 'cacerts.pem')}:" in p and expected in p for p in found), found


def test_cacerts_is_the_ca_not_a_server_certificate(work: Path, ca: trustme.CA) -> None:
    """A server certificate in cacerts.pem is named; the CA itself is taken as PEM."""
    leaf = ca.issue_cert("rancher.example.com").cert_chain_pems[0].bytes()
    text = cluster(secret("cattle-keys-server", cacerts_pem=b64(leaf)), SERVICE, INGRESS,
                   DEPLOYMENT + MOUNT)
    assert_problem(problems(text), text, "cacerts.pem", "addons[Secret/cattle-keys-server]."
                   "data.cacerts.pem: holds a certificate that is not a CA")
    good = cluster(secret("cattle-keys-server", cacerts_pem=b64(ca.cert_pem.bytes())), SERVICE,
                   INGRESS, DEPLOYMENT + MOUNT)
    assert load(good).server.cacerts_pem == ca.cert_pem.bytes().decode()


def test_cacerts_as_plain_pem_in_string_data(work: Path, ca: trustme.CA) -> None:
    """`stringData` holds plain PEM (Kubernetes encodes it): taken as it is."""
    pem = textwrap.indent(ca.cert_pem.bytes().decode(), "    ")
    server_secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: cattle-keys-server}\n"
                     f"stringData:\n  cacerts.pem: |\n{pem}")
    desired = load(cluster(server_secret, SERVICE, INGRESS, DEPLOYMENT + MOUNT))
    assert desired.server.cacerts_pem == ca.cert_pem.bytes().decode()


def test_server_secret_must_be_mounted_and_volumes_must_exist(work: Path, ca: trustme.CA) -> None:
    """cattle-keys-server unmounted, or a volume naming a Secret that is not there, is named."""
    ca_secret = secret("cattle-keys-server", cacerts_pem=b64(ca.cert_pem.bytes()))
    text = cluster(ca_secret, SERVICE, INGRESS, DEPLOYMENT)
    assert_problem(problems(text), text, "containers:", "addons[Deployment/cattle].spec.template."
                   "spec.containers: the Secret `cattle-keys-server` is not mounted at "
                   "/etc/rancher/ssl")
    text = cluster(SERVICE, INGRESS, DEPLOYMENT + MOUNT)
    assert_problem(problems(text), text, "secretName: cattle-keys-server", "addons[Deployment/"
                   "cattle].spec.template.spec.volumes[0].secret.secretName: the Secret "
                   "`cattle-keys-server` is not defined in the addons")


def test_deployment_args_env_and_image(work: Path) -> None:
    """--no-cacerts, audit flags into AUDIT_* env, env kept, registry and version of the image;
    unknown args and valueFrom are warnings."""
    deployment = DEPLOYMENT.replace("rancher/rancher:latest",
                                    "registry.example.com:5000/rancher/rancher:v2.0.8") + """\
        args: [--no-cacerts, --audit-level=2, --audit-log-path, /var/log/audit/, --debug]
        env:
        - {name: HTTP_PROXY, value: "http://proxy.example.com:3128"}
        - {name: AUDIT_LOG_MAXAGE, value: "20"}
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: s, key: k}}
"""
    desired = load(cluster(SERVICE, INGRESS, deployment))
    server = desired.server
    assert server.no_cacerts
    assert dict(server.env) == {"AUDIT_LEVEL": "2", "AUDIT_LOG_PATH": "/var/log/audit/",
                                "HTTP_PROXY": "http://proxy.example.com:3128",
                                "AUDIT_LOG_MAXAGE": "20"}
    assert (server.registry, server.version) == ("registry.example.com:5000", "v2.0.8")
    assert any("ignores the args ['--debug']" in w for w in desired.warnings), desired.warnings
    assert any("`TOKEN` from `valueFrom` is ignored" in w for w in desired.warnings)


def test_bad_audit_level_and_conflicting_ca_settings(work: Path, ca: trustme.CA) -> None:
    """AUDIT_LEVEL out of range is named at its value; cacerts.pem with --no-cacerts too."""
    text = cluster(SERVICE, INGRESS, DEPLOYMENT + "        args: [--audit-level, loud]\n")
    assert_problem(problems(text), text, "--audit-level", "addons[Deployment/cattle].spec."
                   "template.spec.containers[0].args: AUDIT_LEVEL='loud' is not valid")
    deployment = DEPLOYMENT + "        args: [--no-cacerts]\n        env:\n" \
        "        - {name: AUDIT_LEVEL, value: \"9\"}\n" + MOUNT
    text = cluster(secret("cattle-keys-server", cacerts_pem=b64(ca.cert_pem.bytes())), SERVICE,
                   INGRESS, deployment)
    found = problems(text)
    assert_problem(found, text, "AUDIT_LEVEL", "addons[Deployment/cattle].spec.template.spec."
                   "containers[0].env[0].value: AUDIT_LEVEL='9' is not valid")
    assert_problem(found, text, "args: [--no-cacerts]", "addons[Deployment/cattle].spec."
                   "template.spec.containers[0].args: `--no-cacerts` asks the servers to publish "
                   "no CA, but the Secret `cattle-keys-server` gives one")


@pytest.mark.parametrize(
    ("edit", "needle", "expected"),
    [
        (("- host: rancher.example.com", "- host: 10.0.0.9"), "10.0.0.9",
         "spec.rules[0].host: 10.0.0.9 is an IP address; an Ingress host must be a DNS name"),
        (("- host: rancher.example.com", "- host: Rancher.Example.com"), "Rancher",
         "spec.rules[0].host: 'Rancher.Example.com' is not a valid host name"),
        (("- host: rancher.example.com", "- host: '*.example.com'"), "*.example",
         "spec.rules[0].host: a wildcard host: Corral serves one FQDN"),
        (("- host: rancher.example.com\n    http:", "- http:"), "- http:",
         "spec.rules[0].host: the rule has no host"),
        (("serviceName: cattle-service", "serviceName: rancher"), "- backend:",
         "spec.rules[0].http.paths[0].backend: the backend Service `rancher` is not defined"),
        (("servicePort: 80", "servicePort: 443"), "- backend:",
         "spec.rules[0].http.paths[0].backend: port 443 is not a port of the Service"),
        (('proxy-read-timeout: "1800"', 'proxy-read-timeout: "30m"'), "30m",
         "metadata.annotations.nginx.ingress.kubernetes.io/proxy-read-timeout: '30m' is not a "
         "number of seconds"),
        (('proxy-send-timeout: "1800"', "proxy-send-timeout: 1800"), "send-timeout: 1800",
         "metadata.annotations.nginx.ingress.kubernetes.io/proxy-send-timeout: input should be "
         "a valid string"),
        (('ssl-redirect: "false"', 'ssl-redirect: "maybe"'), "maybe",
         "metadata.annotations.nginx.ingress.kubernetes.io/ssl-redirect: 'maybe' is not true "
         "or false"),
    ],
)
def test_ingress_mistakes(
    work: Path, edit: tuple[str, str], needle: str, expected: str
) -> None:
    """What Corral's ingress cannot serve is named at its line in the Ingress."""
    text = cluster(SERVICE, INGRESS.replace(*edit), DEPLOYMENT)
    assert_problem(problems(text), text, needle, f"addons[Ingress/cattle-ingress-http].{expected}")


def test_ingress_v1_backend_annotations_and_unused_ones(work: Path) -> None:
    """networking.k8s.io/v1 backends by port name work; other timeouts are read; an annotation
    Corral does not use is a warning."""
    ingress = INGRESS.replace("""\
          serviceName: cattle-service
          servicePort: 80""", """\
          service: {name: cattle-service, port: {name: http}}""").replace(
        '"1800"', '"900"', 1).replace(
        "  annotations:\n", "  annotations:\n    kubernetes.io/ingress.class: nginx\n")
    desired = load(cluster(SERVICE, ingress, DEPLOYMENT))
    assert desired.ingress.read_timeout_s == 900.0
    assert any("does not use the annotations ['kubernetes.io/ingress.class']" in w
               for w in desired.warnings), desired.warnings


def test_missing_and_twice_defined_objects(work: Path) -> None:
    """No Ingress, no Deployment, no kind, no name, or an Ingress written twice: each named."""
    text = cluster(SERVICE)
    found = problems(text)
    assert_problem(found, text, "addons:", "addons: the addons have no Deployment `cattle`")
    assert_problem(found, text, "addons:", "addons: the addons have no Ingress "
                   "`cattle-ingress-http`: Corral takes the FQDN from its host")
    text = cluster(SERVICE, INGRESS, INGRESS, DEPLOYMENT, "apiVersion: v1\nmetadata: {name: x}\n",
                   "apiVersion: v1\nkind: ConfigMap\n")
    found = problems(text)
    assert_problem(found, text, "apiVersion: extensions/v1beta1", "addons[Ingress/cattle-"
                   "ingress-http]: Ingress/cattle-ingress-http is defined twice (first at c.yml:",
                   nth=2)
    kindless = line(text, "metadata: {name: x}") - 1  # the object's first line
    assert f"c.yml:{kindless}: addons[document 5]: `kind` is missing" in "\n".join(found)
    assert any("addons[document 6].metadata.name: `metadata.name` is missing" in p for p in found)


def test_ignored_objects_are_one_note(work: Path) -> None:
    """Namespace and an unused Secret are named in ONE warning with their lines."""
    text = cluster(NAMESPACE, secret("extra", a="YQ=="), SERVICE, INGRESS, DEPLOYMENT)
    desired = load(text)
    assert desired.warnings == (
        f"c.yml:{line(text, 'addons:')}: addons: ignored, no meaning for Corral (2 objects): "
        f"Namespace/cattle-system (line {line(text, 'kind: Namespace')}), Secret/extra "
        f"(line {line(text, 'apiVersion: v1', 2) - 0})",
    )


def test_addons_include_reads_files_beside_the_cluster_file(work: Path) -> None:
    """Objects may come from addons_include (paths relative to the cluster file), with that
    file's own lines; a URL or a missing file is named."""
    (work / "rancher").mkdir()
    (work / "rancher" / "ingress.yml").write_text("---\n" + INGRESS.replace(
        "- host: rancher.example.com", "- host: <FQDN>"))
    top = "addons_include:\n  - rancher/ingress.yml\n  - https://example.com/a.yml\n  - gone.yml\n"
    text = cluster(SERVICE, DEPLOYMENT, top=top)
    found = problems(text)
    included = INGRESS.split("\n").index("  - host: rancher.example.com") + 2
    assert (f"rancher/ingress.yml:{included}: addons_include[0][Ingress/cattle-ingress-http]."
            "spec.rules[0].host: the template's placeholder `<FQDN>` is not replaced") in \
        "\n".join(found)
    assert_problem(found, text, "https://", "addons_include[1]: Corral reads addons only from "
                   "local files")
    assert_problem(found, text, "gone.yml", "addons_include[2]: cannot read gone.yml")


def test_not_a_literal_block_is_a_warning(work: Path) -> None:
    """`addons:` as a quoted string still works, with a warning that lines are not exact."""
    body = "---\n" + "---\n".join([SERVICE, INGRESS, DEPLOYMENT])
    text = NODES + "addons: " + json.dumps(body) + "\n"
    desired = load(text)
    assert desired.fqdn == "rancher.example.com"
    assert any("not a literal block" in w for w in desired.warnings)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("rancher/rancher:v2.0.8", ("", "v2.0.8")),
        ("rancher/rancher", ("", "latest")),
        ("reg.example.com/rancher/rancher:v2.1.0", ("reg.example.com", "v2.1.0")),
        ("localhost:5000/rancher/rancher:v2", ("localhost:5000", "v2")),
        ("localhost/rancher:v2", ("localhost", "v2")),
        ("rancher/rancher@sha256:abcd", ("", "")),
    ],
)
def test_image_gives_registry_prefix_and_version(image: str, expected: tuple[str, str]) -> None:
    """The Deployment's image: a first part with '.' or ':' (or localhost) is a registry."""
    assert split_image(image) == expected
