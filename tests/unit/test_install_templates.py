"""Rancher's two RKE templates for the HA install with external TLS, stored verbatim in
tests/data/rke-templates/: rejected with every placeholder named while unedited, accepted as
published once an operator has replaced the placeholders."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import trustme

from corral.install.desired import DesiredCluster
from corral.install.validate import ClusterFileError, load_cluster_file

TEMPLATES = Path(__file__).parents[1] / "data" / "rke-templates"
CERTIFICATE = TEMPLATES / "3-node-externalssl-certificate.yml"
RECOGNIZED_CA = TEMPLATES / "3-node-externalssl-recognizedca.yml"
# the `cacerts.pem` value Rancher's HA guide shows as the result of Option A
GUIDE_CACERTS = (
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUNvRENDQVlnQ0NRRHVVWjZuMEZWeU16QU5CZ2txaGtpRzl3MEJB"
    "UXNGQURBU01SQXdEZ1lEVlFRRERBZDAKWlhOMExXTmhNQjRYRFRFNE1EVXdOakl4TURRd09Wb1hEVEU0TURjd05USXhN"
    "RFF3T1Zvd0VqRVFNQTRHQTFVRQpBd3dIZEdWemRDMWpZVENDQVNJd0RRWUpLb1pJaHZjTkFRRUJCUUFEZ2dFUEFEQ0NB"
    "UW9DZ2dFQkFNQmpBS3dQCndhRUhwQTdaRW1iWWczaTNYNlppVmtGZFJGckJlTmFYTHFPL2R0RUdmWktqYUF0Wm45R1Vs"
    "ckQxZUlUS3UzVHgKOWlGVlV4Mmo1Z0tyWmpwWitCUnFiZ1BNbk5hS1hocmRTdDRtUUN0VFFZdGRYMVFZS0pUbWF5NU45"
    "N3FoNTZtWQprMllKRkpOWVhHWlJabkdMUXJQNk04VHZramF0ZnZOdmJ0WmtkY2orYlY3aWhXanp2d2theHRUVjZlUGxu"
    "M2p5CnJUeXBBTDliYnlVcHlad3E2MWQvb0Q4VUtwZ2lZM1dOWmN1YnNvSjhxWlRsTnN6UjVadEFJV0tjSE5ZbE93d2oK"
    "aG41RE1tSFpwZ0ZGNW14TU52akxPRUc0S0ZRU3laYlV2QzlZRUhLZTUxbGVxa1lmQmtBZWpPY002TnlWQUh1dApuay9D"
    "MHpXcGdENkIwbkVDQXdFQUFUQU5CZ2txaGtpRzl3MEJBUXNGQUFPQ0FRRUFHTCtaNkRzK2R4WTZsU2VBClZHSkMvdzE1"
    "bHJ2ZXdia1YxN3hvcmlyNEMxVURJSXB6YXdCdFJRSGdSWXVtblVqOGo4T0hFWUFDUEthR3BTVUsKRDVuVWdzV0pMUUV0"
    "TDA2eTh6M3A0MDBrSlZFZW9xZlVnYjQrK1JLRVJrWmowWXR3NEN0WHhwOVMzVkd4NmNOQQozZVlqRnRQd2hoYWVEQmdm"
    "a1hXQWtISXFDcEsrN3RYem9pRGpXbi8walI2VDcrSGlaNEZjZ1AzYnd3K3NjUDIyCjlDQVZ1ZFg4TWpEQ1hTcll0Y0ZI"
    "NllBanlCSTJjbDhoSkJqa2E3aERpVC9DaFlEZlFFVFZDM3crQjBDYjF1NWcKdE03Z2NGcUw4OVdhMnp5UzdNdXk5bEth"
    "UDBvTXl1Ty82Tm1wNjNsVnRHeEZKSFh4WTN6M0lycGxlbTNZQThpTwpmbmlYZXc9PQotLS0tLUVORCBDRVJUSUZJQ0FU"
    "RS0tLS0tCg=="
)


def operator_edit(template: Path, key: Path, cacerts: str = "") -> str:
    """The template with its placeholders replaced as Rancher's HA guide tells the operator."""
    text = template.read_text()
    for n in (1, 2, 3):
        text = text.replace("<IP>", f"10.0.0.{n}", 1)
    text = text.replace("<USER>", "root").replace("<PEM_FILE>", str(key))
    return text.replace("<FQDN>", "rancher.example.com").replace("<BASE64_CA>", cacerts)


def load_edited(tmp_path: Path, text: str) -> DesiredCluster:
    """Write rancher-cluster.yml (the guide's name) and load it."""
    path = tmp_path / "rancher-cluster.yml"
    path.write_text(text)
    return load_cluster_file(path)


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    """The SSH key file the operator's nodes use."""
    path = tmp_path / "id_rsa"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return path


@pytest.mark.parametrize(
    ("template", "placeholders"),
    [
        (CERTIFICATE, {2: "<IP>", 3: "<USER>", 5: "<PEM_FILE>", 6: "<IP>", 7: "<USER>",
                       9: "<PEM_FILE>", 10: "<IP>", 11: "<USER>", 13: "<PEM_FILE>",
                       49: "<BASE64_CA>", 79: "<FQDN>"}),
        (RECOGNIZED_CA, {2: "<IP>", 3: "<USER>", 5: "<PEM_FILE>", 6: "<IP>", 7: "<USER>",
                         9: "<PEM_FILE>", 10: "<IP>", 11: "<USER>", 13: "<PEM_FILE>",
                         70: "<FQDN>"}),
    ],
    ids=["certificate", "recognizedca"],
)
def test_unedited_template_names_every_placeholder_and_nothing_else(
    template: Path, placeholders: dict[int, str]
) -> None:
    """As downloaded, a template yields exactly one problem per placeholder, at its line."""
    with pytest.raises(ClusterFileError) as caught:
        load_cluster_file(template)
    found = {p.line: p.message for p in caught.value.problems}
    assert found == {
        line: f"the template's placeholder `{name}` is not replaced"
        for line, name in placeholders.items()
    }
    rows = template.read_text().split("\n")
    assert all(name in rows[line - 1] for line, name in placeholders.items())


def test_recognized_ca_template_as_published(tmp_path: Path, key: Path) -> None:
    """The recognised-CA template, placeholders replaced: three SSH nodes with every role, the
    FQDN and the template's timeouts, servers with `--no-cacerts`."""
    desired = load_edited(tmp_path, operator_edit(RECOGNIZED_CA, key))
    assert desired.provider == "ssh" and desired.cluster_name == "local"
    assert [(n.address, n.user, n.port, n.ssh_key_path) for n in desired.nodes] == [
        (f"10.0.0.{n}", "root", 22, key) for n in (1, 2, 3)]
    assert all(n.roles == {"controlplane", "etcd", "worker"} for n in desired.nodes)
    assert desired.fqdn == "rancher.example.com"
    assert (desired.ingress.connect_timeout_s, desired.ingress.read_timeout_s,
            desired.ingress.send_timeout_s, desired.ingress.ssl_redirect) == (
        30.0, 1800.0, 1800.0, False)
    assert desired.server.no_cacerts and desired.server.cacerts_pem == ""
    assert desired.server.image == "rancher/rancher:latest"
    assert desired.load_balancer is None and not desired.snapshots.enabled
    assert len(desired.warnings) == 1
    assert "Namespace/cattle-system (line 17), ServiceAccount/cattle-admin (line 22), " \
        "ClusterRoleBinding/cattle-crb (line 28)" in desired.warnings[0]


def test_certificate_template_as_published(tmp_path: Path, key: Path) -> None:
    """The self-signed template with the operator's CA (base64, one line): the servers publish
    exactly that CA."""
    ca = trustme.CA()
    encoded = base64.b64encode(ca.cert_pem.bytes()).decode()
    desired = load_edited(tmp_path, operator_edit(CERTIFICATE, key, encoded))
    assert desired.server.cacerts_pem == ca.cert_pem.bytes().decode()
    assert not desired.server.no_cacerts
    assert desired.fqdn == "rancher.example.com" and len(desired.nodes) == 3


def test_certificate_template_with_the_guides_example_value(tmp_path: Path, key: Path) -> None:
    """The `cacerts.pem` line of the guide's Option A result is accepted as it is printed."""
    desired = load_edited(tmp_path, operator_edit(CERTIFICATE, key, GUIDE_CACERTS))
    assert desired.server.cacerts_pem.startswith("-----BEGIN CERTIFICATE-----\nMIICoDCCAYgC")


def test_templates_are_stored_verbatim() -> None:
    """The stored templates are the published files (sizes and their distinctive lines)."""
    assert len(CERTIFICATE.read_bytes()) == 2819
    assert len(RECOGNIZED_CA.read_bytes()) == 2379
    assert "    cacerts.pem: <BASE64_CA>  # CA cert used to sign cattle server cert and key\n" in \
        CERTIFICATE.read_text()
    assert "          args:\n          - --no-cacerts\n" in RECOGNIZED_CA.read_text()
