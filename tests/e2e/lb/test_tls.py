"""TLS termination at `corral lb`: the full chain, TLS 1.2 minimum, SNI and ALPN."""

from __future__ import annotations

import socket

import pytest
from cryptography import x509

from tests.e2e.lb.clients import curl, s_client, tls_connect
from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import OTHER_NAME, SERVER_NAME, Certs, LbProcess, lb_config


@pytest.fixture(scope="module")
def tls_lb(certs: Certs, module_backends: StartBackends, module_start_lb: StartLb) -> LbProcess:
    """An lb with two certificates (lb.test first, other.test second) and ALPN http/1.1."""
    config = lb_config(certs, module_backends(1))
    config["servers"][0]["tls"] = {
        "certificates": [
            {"cert": str(certs.main.chain), "key": str(certs.main.key)},
            {"cert": str(certs.other.chain), "key": str(certs.other.key)},
        ],
        "protocols": ["TLSv1.2", "TLSv1.3"],
        "alpn": ["http/1.1"],
    }
    return module_start_lb(config)


def peer_names(der: bytes | None) -> list[str]:
    """DNS names in a DER certificate's subjectAltName."""
    assert der is not None
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return san.value.get_values_for_type(x509.DNSName)


def test_full_chain_served_and_verified_by_curl(certs: Certs, tls_lb: LbProcess) -> None:
    """curl trusting only the root verifies the lb: the intermediate is served with the leaf."""
    result = curl(certs, tls_lb.port, "/healthz", "-o", "/dev/null", "-w", "%{http_code}")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"200"


def test_chain_has_leaf_then_intermediate(certs: Certs, tls_lb: LbProcess) -> None:
    """openssl s_client sees two certificates, the server's first, and verifies them."""
    result = s_client(certs, tls_lb.port, "-showcerts", "-verify_return_error")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("-----BEGIN CERTIFICATE-----") == 2
    assert "Verify return code: 0 (ok)" in result.stdout
    first_subject = result.stdout.split(" 0 s:", 1)[1].splitlines()[0]
    assert "Testing cert" in first_subject  # trustme's leaf, not the intermediate CA


def test_tls_1_1_refused(certs: Certs, tls_lb: LbProcess) -> None:
    """A client limited to TLS 1.1 (allowed on the client side) cannot handshake."""
    result = s_client(certs, tls_lb.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-brief")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Protocol version: TLSv1.1" not in output
    assert "no protocols available" not in output  # the refusal came from the server


@pytest.mark.parametrize(("flag", "version"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_accepted(certs: Certs, tls_lb: LbProcess, flag: str, version: str) -> None:
    """TLS 1.2 and TLS 1.3 handshakes succeed and verify."""
    result = s_client(certs, tls_lb.port, flag, "-brief", "-verify_return_error")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Protocol version: {version}" in output
    assert "Verification: OK" in output


def test_sni_selects_matching_certificate(certs: Certs, tls_lb: LbProcess) -> None:
    """SNI other.test gets the other.test certificate; lb.test gets the first one."""
    with tls_connect(certs, tls_lb.port, server_name=OTHER_NAME) as sock:
        assert peer_names(sock.getpeercert(binary_form=True)) == [OTHER_NAME]
    with tls_connect(certs, tls_lb.port, server_name=SERVER_NAME) as sock:
        assert SERVER_NAME in peer_names(sock.getpeercert(binary_form=True))


def test_no_sni_gets_default_certificate(certs: Certs, tls_lb: LbProcess) -> None:
    """A client that sends no SNI gets the first configured certificate."""
    with tls_connect(certs, tls_lb.port, server_name=None) as sock:
        assert SERVER_NAME in peer_names(sock.getpeercert(binary_form=True))


def test_sni_other_name_curl_request(certs: Certs, tls_lb: LbProcess) -> None:
    """curl to https://other.test verifies the SNI-chosen certificate and gets a response."""
    result = curl(
        certs, tls_lb.port, "/healthz", "-o", "/dev/null", "-w", "%{http_code}", host=OTHER_NAME
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"200"


def test_alpn_selects_http_1_1(certs: Certs, tls_lb: LbProcess) -> None:
    """ALPN offering h2 and http/1.1 negotiates http/1.1 (alpn: [http/1.1])."""
    context = certs.client_context(alpn=["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", tls_lb.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as sock,
    ):
        assert sock.selected_alpn_protocol() == "http/1.1"


def test_tls_1_2_without_forward_secrecy_refused(certs: Certs, tls_lb: LbProcess) -> None:
    """A TLS 1.2 client offering only a static-key CBC suite (AES128-SHA) cannot handshake."""
    result = s_client(certs, tls_lb.port, "-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0", "-brief")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Protocol version: TLSv1.2" not in output


def test_tls_1_2_ecdhe_aead_accepted(certs: Certs, tls_lb: LbProcess) -> None:
    """A TLS 1.2 client offering ECDHE with AES-GCM handshakes with that suite."""
    suite = "ECDHE-ECDSA-AES128-GCM-SHA256"
    result = s_client(certs, tls_lb.port, "-tls1_2", "-cipher", suite, "-brief")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Ciphersuite: {suite}" in output
