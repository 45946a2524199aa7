"""Certificates in the cluster file: the load balancer's files and the ingress Secret checked
with corral.pki (chain order, key match), and whether clients can verify them with the CA the
servers publish (`cacerts.pem`, `--no-cacerts`, or the CA Corral generates)."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest
import trustme

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
metadata: {name: cattle-service, namespace: cattle-system}
spec:
  ports:
  - {port: 80, name: http}
  - {port: 443, name: https}
"""
INGRESS = """\
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  namespace: cattle-system
  name: cattle-ingress-http
spec:
  rules:
  - host: rancher.example.com
    http:
      paths:
      - backend: {serviceName: cattle-service, servicePort: 80}
"""
INGRESS_TLS = """\
  tls:
  - secretName: cattle-keys-ingress
    hosts:
    - rancher.example.com
"""
DEPLOYMENT = """\
kind: Deployment
apiVersion: extensions/v1beta1
metadata: {name: cattle, namespace: cattle-system}
spec:
  template:
    spec:
      containers:
      - name: cattle-server
        image: rancher/rancher:v2.0.8
"""
NO_CACERTS = "        args: [--no-cacerts]\n"
MOUNT = """\
        volumeMounts:
        - {mountPath: /etc/rancher/ssl, name: cattle-keys-volume, readOnly: true}
      volumes:
      - name: cattle-keys-volume
        secret: {defaultMode: 420, secretName: cattle-keys-server}
"""


def b64(data: bytes) -> str:
    """One-line base64 (`base64 -w0`)."""
    return base64.b64encode(data).decode()


def secret(name: str, **data: bytes) -> str:
    """A Secret document; `data` keys use _ for . (tls_crt → tls.crt)."""
    rows = "".join(f"  {key.replace('_', '.')}: {b64(value)}\n" for key, value in data.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\ndata:\n{rows}"


def cluster(*docs: str, lb: str = "") -> str:
    """Three local nodes, an optional load_balancer block, and `docs` as the addons."""
    return NODES + lb + "addons: |-\n" + textwrap.indent("---\n" + "---\n".join(docs), "  ")


def lb_block(tls: str) -> str:
    """A load_balancer: section with the given tls mapping."""
    return f"load_balancer:\n  listen: 127.0.0.1:8443\n  tls: {tls}\n"


def line(text: str, needle: str) -> int:
    """The 1-based line of the first line containing `needle`."""
    return next(n for n, row in enumerate(text.split("\n"), start=1) if needle in row)


def problems(text: str) -> list[str]:
    """The rendered problems of `text` written as c.yml (in the current directory)."""
    Path("c.yml").write_text(text)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster_file("c.yml")
    return [str(problem) for problem in caught.value.problems]


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path, so problems start with `c.yml:`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    """Two CAs, an intermediate, server certificates and keys, as PEM."""
    ca, other = trustme.CA(), trustme.CA()
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("rancher.example.com")
    stranger = other.issue_cert("rancher.example.com")
    return {
        "ca": ca.cert_pem.bytes(),
        "chain": b"".join(p.bytes() for p in leaf.cert_chain_pems),
        "reversed": b"".join(p.bytes() for p in reversed(leaf.cert_chain_pems)),
        "key": leaf.private_key_pem.bytes(),
        "other_chain": b"".join(p.bytes() for p in stranger.cert_chain_pems),
        "other_key": stranger.private_key_pem.bytes(),
    }


def write_pair(work: Path, pki: dict[str, bytes], chain: str, key: str) -> str:
    """Write chain.pem and key.pem; the tls mapping naming them."""
    (work / "chain.pem").write_bytes(pki[chain])
    (work / "key.pem").write_bytes(pki[key])
    return "{cert: chain.pem, key: key.pem}"


def test_lb_files_in_the_wrong_order_are_named(work: Path, pki: dict[str, bytes]) -> None:
    """An intermediate before the server certificate: load_balancer.tls.cert, with the order."""
    text = cluster(SERVICE, INGRESS, DEPLOYMENT + NO_CACERTS,
                   lb=lb_block(write_pair(work, pki, "reversed", "key")))
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(f"c.yml:{line(text, 'tls:')}: load_balancer.tls.cert: chain.pem: "
                               "certificate 1 (")
    assert "comes before the certificate it issued" in found[0]
    assert "(here: certificates in the order 2, 1)" in found[0]


def test_lb_key_that_does_not_match_is_named(work: Path, pki: dict[str, bytes]) -> None:
    """A key of another certificate: load_balancer.tls.key, naming both files."""
    text = cluster(SERVICE, INGRESS, DEPLOYMENT + NO_CACERTS,
                   lb=lb_block(write_pair(work, pki, "chain", "other_key")))
    found = problems(text)
    assert found == [
        f"c.yml:{line(text, 'tls:')}: load_balancer.tls.key: the key in key.pem does not match "
        f"the certificate in chain.pem ({found[0].split('(', 1)[1].split(')')[0]}) — fix: use "
        "the key the certificate was issued for (or reissue the certificate for this key)"
    ]


def test_lb_files_that_do_not_exist(work: Path) -> None:
    """A missing certificate file is named with its path."""
    text = cluster(SERVICE, INGRESS, DEPLOYMENT, lb=lb_block("{cert: nope.pem, key: k.pem}"))
    assert problems(text) == [f"c.yml:{line(text, 'tls:')}: load_balancer.tls.cert: "
                              "certificate file nope.pem does not exist — fix: check the path"]


# (id, lb tls: "generate" | pair name, Secret cattle-keys-server CA, --no-cacerts, expected)
TRUST = [
    ("generate, Corral's CA", "generate", None, False, None),
    ("generate with your CA", "generate", "ca", False,
     "load_balancer.tls.generate: Corral cannot sign with the CA of `cattle-keys-server`"),
    ("generate with --no-cacerts", "generate", None, True,
     "load_balancer.tls.generate: the generated certificate is signed by the cluster's own CA, "
     "which no client recognises"),
    ("your cert, your CA", "chain", "ca", False, None),
    ("your cert, recognised CA", "chain", None, True, None),
    ("your cert, another CA", "other", "ca", False,
     "load_balancer.tls.cert: the load balancer's certificate is not signed by the CA in "
     "`cattle-keys-server` `cacerts.pem`"),
    ("your cert, no CA said", "chain", None, False,
     "load_balancer.tls.cert: the servers would publish the CA Corral generates, which did not "
     "sign the load balancer's certificate — fix: add the Secret `cattle-keys-server`"),
]


@pytest.mark.parametrize(("tls", "ca", "no_cacerts", "expected"), [c[1:] for c in TRUST],
                         ids=[c[0] for c in TRUST])
def test_clients_can_verify_the_load_balancer(
    work: Path, pki: dict[str, bytes], tls: str, ca: str | None, no_cacerts: bool,
    expected: str | None,
) -> None:
    """The lb's certificate must verify with what the servers publish as their CA."""
    if tls == "generate":
        tls_text = "{generate: true}"
    elif tls == "chain":
        tls_text = write_pair(work, pki, "chain", "key")
    else:
        tls_text = write_pair(work, pki, "other_chain", "other_key")
    docs = [SERVICE, INGRESS, DEPLOYMENT + (NO_CACERTS if no_cacerts else "")]
    if ca is not None:
        docs = [secret("cattle-keys-server", cacerts_pem=pki[ca]), SERVICE, INGRESS,
                DEPLOYMENT + MOUNT]
    text = cluster(*docs, lb=lb_block(tls_text))
    Path("c.yml").write_text(text)
    if expected is None:
        assert load_cluster_file("c.yml").load_balancer is not None
        return
    found = problems(text)
    want = f"c.yml:{line(text, 'tls:')}: {expected}"  # tls is one flow mapping: one line
    assert any(problem.startswith(want) for problem in found), (want, found)


def test_ingress_secret_as_in_rancher_certificate_template(
    work: Path, pki: dict[str, bytes]
) -> None:
    """cattle-keys-ingress with tls.crt/tls.key signed by the cacerts.pem CA: the ingress gets
    the PEM, and redirects to HTTPS by default (TLS without the ssl-redirect annotation)."""
    docs = [secret("cattle-keys-ingress", tls_crt=pki["chain"], tls_key=pki["key"]),
            secret("cattle-keys-server", cacerts_pem=pki["ca"]), SERVICE, INGRESS + INGRESS_TLS,
            DEPLOYMENT + MOUNT]
    Path("c.yml").write_text(cluster(*docs))
    ingress = load_cluster_file("c.yml").ingress
    assert ingress.tls_cert_pem == pki["chain"].decode()
    assert ingress.tls_key_pem == pki["key"].decode()
    assert ingress.ssl_redirect


@pytest.mark.parametrize(
    ("crt", "key", "ca", "needle", "expected"),
    [
        ("reversed", "key", "ca", "tls.crt", "addons[Secret/cattle-keys-ingress].data.tls.crt: "
         "Secret/cattle-keys-ingress tls.crt: certificate 1 ("),
        ("chain", "other_key", "ca", "tls.key", "addons[Secret/cattle-keys-ingress].data.tls.key: "
         "the key in Secret/cattle-keys-ingress tls.key does not match the certificate"),
        ("other_chain", "other_key", "ca", "secretName", "addons[Ingress/cattle-ingress-http]."
         "spec.tls[0].secretName: the ingress certificate (tls.crt) is not signed by the CA"),
    ],
    ids=["wrong order", "key mismatch", "another CA"],
)
def test_ingress_secret_mistakes(
    work: Path, pki: dict[str, bytes], crt: str, key: str, ca: str, needle: str, expected: str
) -> None:
    """The ingress Secret's chain order, key and CA are checked like the lb's files."""
    docs = [secret("cattle-keys-ingress", tls_crt=pki[crt], tls_key=pki[key]),
            secret("cattle-keys-server", cacerts_pem=pki[ca]), SERVICE, INGRESS + INGRESS_TLS,
            DEPLOYMENT + MOUNT]
    text = cluster(*docs)
    found = problems(text)
    want = f"c.yml:{line(text, needle)}: {expected}"
    assert any(problem.startswith(want) for problem in found), (want, found)


def test_ingress_tls_needs_its_secret_and_host(work: Path, pki: dict[str, bytes]) -> None:
    """tls naming an undefined Secret, or hosts without the rule's host, are named."""
    text = cluster(SERVICE, INGRESS + INGRESS_TLS.replace("    - rancher.example.com",
                                                          "    - other.example.com"),
                   DEPLOYMENT + NO_CACERTS)
    found = problems(text)
    assert f"c.yml:{line(text, 'secretName')}: addons[Ingress/cattle-ingress-http].spec.tls[0]." \
        "secretName: the Secret `cattle-keys-ingress` is not defined in the addons" in \
        "\n".join(found)
    assert f"c.yml:{line(text, 'hosts:')}: addons[Ingress/cattle-ingress-http].spec.tls[0]." \
        "hosts: does not list the rule's host rancher.example.com" in "\n".join(found)


def test_secret_values_never_appear_in_problems(work: Path, pki: dict[str, bytes]) -> None:
    """A broken tls.key is described without its content."""
    broken = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n"
    docs = [secret("cattle-keys-ingress", tls_crt=pki["chain"], tls_key=broken),
            secret("cattle-keys-server", cacerts_pem=pki["ca"]), SERVICE, INGRESS + INGRESS_TLS,
            DEPLOYMENT + MOUNT]
    found = problems(cluster(*docs))
    assert found and all("c2VjcmV0LXZhbHVl" not in p and b64(broken) not in p for p in found)
