"""The certificates of a cluster file: the base64 PEM of the template's Secrets, the load
balancer's files, and whether clients can verify what they meet with the CA the servers publish
(`cacerts.pem` of `cattle-keys-server`, none with `--no-cacerts`, else the one Corral generates).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from corral.config.errors import Loc
from corral.config.loader import Loaded
from corral.install.addons import Document, Findings, RancherObjects
from corral.install.desired import LoadBalancerSpec
from corral.install.k8s import SERVER_SECRET, IngressObject, SecretObject
from corral.install.model import ClusterFile
from corral.install.placeholders import placeholder_in
from corral.pki import (
    PkiError,
    PrivateKey,
    check_chain_order,
    check_current,
    check_key_matches,
    decode_base64_pem,
    is_ca,
    issued_by,
    load_certificates,
    load_private_key,
    parse_certificates,
    parse_private_key,
)


def signed_by(chain: list[x509.Certificate], cas: list[x509.Certificate]) -> bool:
    """True when a certificate of `chain` is one of `cas` or was issued by one of them."""
    return any(cert == ca or issued_by(cert, ca) for cert in chain for ca in cas)


def secret_pem(doc: Document, secret: SecretObject, key: str, out: Findings) -> bytes | None:
    """The PEM bytes of `key` in the Secret (`data` base64, `stringData` plain), or None."""
    if key in secret.stringData:
        return (secret.stringData[key] or "").encode()
    if key not in secret.data:
        out.errors.append(
            doc.problem(("data",), f"`{key}` is missing", f"add `{key}: <base64 of the file>`")
        )
        return None
    value = secret.data[key] or ""
    if placeholder_in(value):
        return None  # reported with every other placeholder
    try:
        return decode_base64_pem(value, f"`{key}`")
    except PkiError as exc:
        message = exc.problem
        if "line breaks" in message:
            message += " (Rancher's HA guide: make sure the base64 is on one line)"
        out.errors.append(doc.problem(("data", key), message, exc.fix))
        return None


def secret_certificates(
    doc: Document, key: str, pem: bytes | None, out: Findings, *, chain: bool
) -> list[x509.Certificate]:
    """The certificates of a Secret key's PEM (in server-first order when `chain`)."""
    if pem is None:
        return []
    what = f"{doc.label} {key}"
    try:
        certs = parse_certificates(pem, what)
        if chain:
            check_chain_order(certs, what)
    except PkiError as exc:
        out.errors.append(doc.problem(("data", key), exc.problem, exc.fix))
        return []
    return certs


def cacerts(found: RancherObjects, out: Findings) -> tuple[list[x509.Certificate], str]:
    """The CA certificates of the Secret `cattle-keys-server` and their PEM text (none and ""
    when it is absent)."""
    doc = found.secrets.get(SERVER_SECRET)
    secret = out.typed_object(doc, SecretObject) if doc is not None else None
    if doc is None or secret is None:
        return [], ""
    out.used.add(doc.label)
    extra = sorted((set(secret.data) | set(secret.stringData)) - {"cacerts.pem"})
    if extra:
        out.warnings.append(
            doc.problem(("data",), f"Corral reads only `cacerts.pem` here, not {extra}", "")
        )
    pem = secret_pem(doc, secret, "cacerts.pem", out)
    certs = secret_certificates(doc, "cacerts.pem", pem, out, chain=False)
    if certs and not is_ca(certs[0]) and certs[0].issuer != certs[0].subject:
        out.errors.append(
            doc.problem(
                ("data", "cacerts.pem"),
                "holds a certificate that is not a CA (and not self-signed)",
                "give the CA certificate that signed the load balancer's certificate "
                "(usually ca.pem), not that certificate itself",
            )
        )
    return certs, (pem or b"").decode() if certs else ""




def ingress_tls(
    doc: Document, ingress: IngressObject, host: str, found: RancherObjects, out: Findings
) -> tuple[list[x509.Certificate], str, str]:
    """(chain, tls.crt PEM, tls.key PEM) of the Ingress's TLS Secret; empty without `tls`."""
    if not ingress.spec.tls:
        return [], "", ""
    tls = ingress.spec.tls[0]
    loc: Loc = ("spec", "tls", 0)
    if len(ingress.spec.tls) > 1:
        out.warnings.append(doc.problem(("spec", "tls", 1), "Corral's ingress serves the first "
                                        "`tls` entry only", ""))
    if host and tls.hosts and host not in tls.hosts:
        out.errors.append(doc.problem((*loc, "hosts"), f"does not list the rule's host {host}",
                                      f"write `hosts: [{host}]`"))
    secret_doc = found.secrets.get(tls.secretName or "")
    if secret_doc is None:
        out.errors.append(doc.problem((*loc, "secretName"), f"the Secret `{tls.secretName}` is "
                                      "not defined in the addons",
                                      "define it with `tls.crt` and `tls.key` (Rancher's "
                                      "`cattle-keys-ingress`)"))
        return [], "", ""
    out.used.add(secret_doc.label)
    secret = out.typed_object(secret_doc, SecretObject)
    if secret is None:
        return [], "", ""
    cert_pem = secret_pem(secret_doc, secret, "tls.crt", out)
    key_pem = secret_pem(secret_doc, secret, "tls.key", out)
    chain = secret_certificates(secret_doc, "tls.crt", cert_pem, out, chain=True)
    key = _private_key(secret_doc, key_pem, out)
    if chain and key is not None:
        try:
            check_key_matches(chain[0], key, f"{secret_doc.label} tls.crt",
                              key_source=f"{secret_doc.label} tls.key")
        except PkiError as exc:
            out.errors.append(secret_doc.problem(("data", "tls.key"), exc.problem, exc.fix))
    if not chain or key is None:
        return chain, "", ""
    return chain, (cert_pem or b"").decode(), (key_pem or b"").decode()


def _private_key(doc: Document, pem: bytes | None, out: Findings) -> PrivateKey | None:
    if pem is None:
        return None
    try:
        return parse_private_key(pem, f"{doc.label} tls.key")
    except PkiError as exc:
        out.errors.append(doc.problem(("data", "tls.key"), exc.problem, exc.fix))
        return None




def published_ca_problem(
    chain: list[x509.Certificate], what: str, ca: list[x509.Certificate], no_cacerts: bool
) -> tuple[str, str] | None:
    """(message, fix) when agents could not verify `chain` with what the servers publish."""
    if no_cacerts or not chain:
        return None
    if ca:
        if signed_by(chain, ca):
            return None
        return (f"{what} is not signed by the CA in `{SERVER_SECRET}` `cacerts.pem`",
                "give a certificate that CA signed, or put the CA that signed it in cacerts.pem")
    return (f"the servers would publish the CA Corral generates, which did not sign {what}",
            f"add the Secret `{SERVER_SECRET}` with the CA that signed it (Rancher's "
            "self-signed template), or `--no-cacerts` in the Deployment's args when a "
            "recognised CA signed it (Rancher's recognised-CA template)")


def lb_certificates(
    loaded: Loaded[ClusterFile], cert: Path, key: Path, out: Findings
) -> list[x509.Certificate]:
    """The load balancer's chain from its files, checked: order, dates, the key matches."""
    loc = ("load_balancer", "tls")
    try:
        chain = load_certificates(cert)
        check_chain_order(chain, str(cert))
        check_current(chain[0], source=str(cert))
    except PkiError as exc:
        out.errors.append(loaded.problem((*loc, "cert"), exc.problem, exc.fix))
        return []
    try:
        check_key_matches(chain[0], load_private_key(key), str(cert), key_source=str(key))
    except PkiError as exc:
        out.errors.append(loaded.problem((*loc, "key"), exc.problem, exc.fix))
    return chain


def validate_trust(
    loaded: Loaded[ClusterFile], found: RancherObjects, ca: list[x509.Certificate],
    no_cacerts: bool, lb: LoadBalancerSpec | None, lb_chain: list[x509.Certificate],
    ingress_chain: list[x509.Certificate], out: Findings,
) -> None:
    """The certificates clients meet must verify with the CA the servers publish."""
    loc = ("load_balancer", "tls")
    if lb is not None and lb.generate and ca:
        out.errors.append(loaded.problem((*loc, "generate"), "Corral cannot sign with the CA of "
                                         f"`{SERVER_SECRET}` (only its certificate is "
                                         "given)", "give `cert`/`key` signed by that CA, or "
                                         "remove the Secret so Corral generates its own CA"))
    if lb is not None and lb.generate and no_cacerts:
        out.errors.append(loaded.problem((*loc, "generate"), "the generated certificate is "
                                         "signed by the cluster's own CA, which no client "
                                         "recognises, and `--no-cacerts` keeps the servers from "
                                         "publishing it", "remove `--no-cacerts`, or give "
                                         "`cert`/`key` from a recognised CA"))
    problem = published_ca_problem(lb_chain, "the load balancer's certificate", ca,
                                           no_cacerts)
    if problem is not None:
        out.errors.append(loaded.problem((*loc, "cert"), *problem))
    problem = published_ca_problem(ingress_chain, "the ingress certificate (tls.crt)",
                                           ca, no_cacerts)
    if problem is not None and found.ingress is not None:
        out.errors.append(found.ingress.problem(("spec", "tls", 0, "secretName"), *problem))
