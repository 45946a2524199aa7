"""Certificate rules of `corral server`: TLS directory, generated CA, serving certificates."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from corral import pki
from tests.e2e.server.conftest import StartServer
from tests.e2e.server.core_harness import CorralServer, run_server_to_exit


def served_certificate(port: int, servername: str | None) -> x509.Certificate:
    """The leaf certificate the server presents for an SNI name (None: no SNI), via openssl."""
    sni = ["-servername", servername] if servername else ["-noservername"]
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *sni],
        input="", capture_output=True, text=True, timeout=20, check=False,
    )
    match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", done.stdout, re.S)
    assert match, f"openssl s_client got no certificate:\n{done.stdout}\n{done.stderr}"
    return x509.load_pem_x509_certificate(match.group(0).encode())


def verifies(port: int, ca: Path, hostname: str) -> bool:
    """True when openssl verifies the server's chain against `ca` for `hostname` (or IP)."""
    is_ip = hostname.replace(".", "").isdigit()
    check = ["-verify_ip", hostname] if is_ip else ["-servername", hostname,
                                                    "-verify_hostname", hostname]
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *check,
         "-CAfile", str(ca), "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=20, check=False,
    )
    return done.returncode == 0 and "Verify return code: 0 (ok)" in done.stdout


def trusting(ca: Path) -> ssl.SSLContext:
    """A client TLS context that trusts exactly `ca`."""
    return ssl.create_default_context(cafile=str(ca))


def write_tls_dir(directory: Path, **files: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / f"{name}.pem").write_bytes(data)
    return directory


@pytest.fixture(scope="module")
def trusted() -> tuple[trustme.CA, trustme.LeafCert]:
    """A private CA and a leaf for localhost / 127.0.0.1 / corral.test."""
    ca = trustme.CA()
    return ca, ca.issue_cert("localhost", "127.0.0.1", "corral.test")


def leaf_files(pair: tuple[trustme.CA, trustme.LeafCert]) -> dict[str, bytes]:
    ca, leaf = pair
    return {
        "cert": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        "key": leaf.private_key_pem.bytes(),
        "cacerts": ca.cert_pem.bytes(),
    }


# -- the TLS-directory rules and their messages ------------------------------------------------


REFUSALS = [
    ("cert without key", {"cert"}, [], ["cert.pem is present", "key.pem is missing",
                                        "add key.pem"]),
    ("key without cert", {"key"}, [], ["key.pem is present", "cert.pem is missing",
                                       "add cert.pem"]),
    ("cert key with cacerts and --no-cacerts", {"cert", "key", "cacerts"}, ["--no-cacerts"],
     ["cacerts.pem and --no-cacerts contradict each other", "use cacerts.pem",
      "--no-cacerts (and remove cacerts.pem)"]),
    ("cert key with neither", {"cert", "key"}, [],
     ["there is neither", "cacerts.pem nor --no-cacerts", "add cacerts.pem",
      "pass --no-cacerts when it is signed by a recognised CA"]),
    ("cacerts only with --no-cacerts", {"cacerts"}, ["--no-cacerts"],
     ["cacerts.pem and --no-cacerts contradict each other"]),
]


@pytest.mark.parametrize(("present", "args", "phrases"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_tls_dir_rule_refuses_to_start(
    tmp_path: Path, trusted: tuple[trustme.CA, trustme.LeafCert], present: set[str],
    args: list[str], phrases: list[str],
) -> None:
    """Each broken TLS-directory combination stops the server with its message."""
    files = {name: data for name, data in leaf_files(trusted).items() if name in present}
    tls = write_tls_dir(tmp_path / "tls-in", **files)
    done = run_server_to_exit(tmp_path, *args, tls_dir=tls)
    assert done.returncode == 1, done.stderr
    first = done.stderr.strip().splitlines()[-1]
    assert first.startswith("corral server: error: "), done.stderr
    for phrase in phrases:
        assert phrase in first, first
    assert str(tls) in first  # names the file's full path
    assert not (tmp_path / "data" / "store.db").exists()  # refused before touching data


def test_key_that_does_not_match_is_refused(
    tmp_path: Path, trusted: tuple[trustme.CA, trustme.LeafCert]
) -> None:
    """A key.pem that is not cert.pem's key is refused, naming both files."""
    files = leaf_files(trusted)
    files["key"] = trusted[0].issue_cert("other.test").private_key_pem.bytes()
    tls = write_tls_dir(tmp_path / "tls-in", **files)
    done = run_server_to_exit(tmp_path, tls_dir=tls)
    assert done.returncode == 1
    assert f"the key in {tls}/key.pem does not match the certificate in {tls}/cert.pem" \
        in done.stderr


def test_cert_not_issued_by_cacerts_is_refused(
    tmp_path: Path, trusted: tuple[trustme.CA, trustme.LeafCert]
) -> None:
    """cert.pem must come from the CA in cacerts.pem; the message says what to do."""
    files = leaf_files(trusted)
    files["cacerts"] = trustme.CA().cert_pem.bytes()
    tls = write_tls_dir(tmp_path / "tls-in", **files)
    done = run_server_to_exit(tmp_path, tls_dir=tls)
    assert done.returncode == 1
    assert "was not issued by any certificate in" in done.stderr
    assert "put the CA that issued it in cacerts.pem" in done.stderr


def test_provided_certificate_with_cacerts(
    start_corral_server: StartServer, tmp_path: Path,
    trusted: tuple[trustme.CA, trustme.LeafCert],
) -> None:
    """cert.pem + key.pem + cacerts.pem: that certificate is served, cacerts.pem published."""
    files = leaf_files(trusted)
    tls = write_tls_dir(tmp_path / "given", **files)
    server = start_corral_server(tls_dir=tls)
    ca_file = tmp_path / "trusted-ca.pem"
    ca_file.write_bytes(files["cacerts"])
    assert httpx.get(f"https://localhost:{server.https_port}/ping", verify=trusting(ca_file)).text \
        == "pong"
    assert verifies(server.https_port, ca_file, "corral.test")
    served = served_certificate(server.https_port, "localhost")
    assert served == x509.load_pem_x509_certificate(files["cert"])
    assert httpx.get(f"{server.http_url}/cacerts").status_code == 302  # plain HTTP redirects
    got = httpx.get(f"https://localhost:{server.https_port}/cacerts", verify=trusting(ca_file))
    assert got.text == files["cacerts"].decode()
    assert got.headers["content-type"].startswith("text/plain")
    assert not (server.data_dir / "tls" / "ca.pem").exists()  # no CA generated


def test_provided_certificate_with_no_cacerts(
    start_corral_server: StartServer, tmp_path: Path,
    trusted: tuple[trustme.CA, trustme.LeafCert],
) -> None:
    """cert.pem + key.pem + --no-cacerts: the certificate is served and cacerts is empty."""
    files = leaf_files(trusted)
    del files["cacerts"]
    tls = write_tls_dir(tmp_path / "given", **files)
    server = start_corral_server("--no-cacerts", tls_dir=tls)
    assert served_certificate(server.https_port, None) == \
        x509.load_pem_x509_certificate(files["cert"])
    got = httpx.get(f"{server.http_url}/cacerts", headers={"X-Forwarded-Proto": "https"})
    assert got.status_code == 200
    assert got.text == ""


def test_cacerts_only_is_published_with_a_generated_serving_certificate(
    start_corral_server: StartServer, tmp_path: Path,
    trusted: tuple[trustme.CA, trustme.LeafCert],
) -> None:
    """cacerts.pem alone (TLS terminated elsewhere): published; HTTPS uses the generated CA."""
    cacerts = leaf_files(trusted)["cacerts"]
    server = start_corral_server(tls_dir=write_tls_dir(tmp_path / "given", cacerts=cacerts))
    got = httpx.get(f"{server.http_url}/cacerts", headers={"X-Forwarded-Proto": "https"})
    assert got.text == cacerts.decode()
    assert verifies(server.https_port, server.ca_path, "localhost")


def test_no_cacerts_alone_publishes_nothing(start_corral_server: StartServer) -> None:
    """--no-cacerts without certificate files: empty cacerts, HTTPS still served."""
    server = start_corral_server("--no-cacerts")
    assert httpx.get(f"{server.http_url}/cacerts", headers={"X-Forwarded-Proto": "https"}).text \
        == ""
    assert verifies(server.https_port, server.ca_path, "127.0.0.1")


# -- the generated CA and serving certificates -------------------------------------------------


def local_ipv4_addresses() -> list[str]:
    import psutil

    return [entry.address for entries in psutil.net_if_addrs().values() for entry in entries
            if entry.family == socket.AF_INET]


def test_generated_ca_and_serving_certificate(corral_server: CorralServer) -> None:
    """No TLS files: CA corral-ca@<unix time> for 10 years; serving cert 365 days for
    localhost, 127.0.0.1 and the host's names and addresses; /cacerts is the CA."""
    server = corral_server
    ca = pki.load_certificates(server.ca_path)[0]
    assert re.fullmatch(r"corral-ca@\d{10}", pki.common_name(ca))
    assert int(pki.common_name(ca).split("@")[1]) <= datetime.now(UTC).timestamp()
    assert 3649 <= (ca.not_valid_after_utc - datetime.now(UTC)).days <= 3650
    fingerprint = pki.fingerprint_sha256(ca)
    assert f"CA {pki.common_name(ca)} SHA256 {fingerprint}" in server.output()
    got = httpx.get(f"{server.http_url}/cacerts", headers={"X-Forwarded-Proto": "https"})
    assert got.text == server.ca_path.read_text()

    served = served_certificate(server.https_port, None)
    assert pki.issued_by(served, ca)
    assert 364 <= (served.not_valid_after_utc - datetime.now(UTC)).days <= 365
    names = ["localhost", "127.0.0.1", socket.gethostname(), *local_ipv4_addresses()]
    for name in names:
        assert pki.matches_hostname(served, name), name
    assert not pki.matches_hostname(served, "evil.test")
    with server.client() as client:
        assert client.get(f"https://localhost:{server.https_port}/ping").text == "pong"
        assert client.get(f"https://127.0.0.1:{server.https_port}/ping").text == "pong"


def restart(start: StartServer, server: CorralServer, *args: str) -> CorralServer:
    """Stop `server` and start another on the same data directory and TLS directory."""
    server.stop()
    return start(*(args or server.args), data_dir=server.data_dir, tls_dir=server.tls_dir)


def test_restart_reuses_ca_and_serving_certificate(start_corral_server: StartServer) -> None:
    """After a restart the CA (same fingerprint) and the serving certificate are the same."""
    first = start_corral_server()
    ca_before = pki.fingerprint_sha256(pki.load_certificates(first.ca_path)[0])
    served_before = served_certificate(first.https_port, None)
    second = restart(start_corral_server, first)
    assert pki.fingerprint_sha256(pki.load_certificates(second.ca_path)[0]) == ca_before
    assert served_certificate(second.https_port, None) == served_before
    assert f"SHA256 {ca_before}" in second.output()


def test_expiring_serving_certificate_is_renewed_at_start(start_corral_server: StartServer) -> None:
    """A serving certificate with fewer than 30 days left is reissued by the same CA at start."""
    first = start_corral_server()
    first.stop()
    tls = first.data_dir / "tls"
    ca = pki.load_certificates(tls / "ca.pem")[0]
    ca_key = pki.load_private_key(tls / "ca-key.pem")
    short, key = pki.issue_certificate(ca, ca_key, common_name="corral",
                                       dns_names=["localhost"], days=10)
    (tls / "serving.pem").write_bytes(pki.certificate_pem(short))
    (tls / "serving-key.pem").write_bytes(pki.private_key_pem(key))
    second = start_corral_server(data_dir=first.data_dir, tls_dir=first.tls_dir)
    served = served_certificate(second.https_port, None)
    assert served.serial_number != short.serial_number
    assert pki.issued_by(served, ca)
    assert (served.not_valid_after_utc - datetime.now(UTC)).days >= 364
    assert "expires on" in second.output()  # the log says why it was reissued


def test_sni_name_matching_server_url_is_learned(start_corral_server: StartServer) -> None:
    """A client asking (SNI) for the server-url host gets a certificate for it in the same
    handshake; other names are not added; learned names survive a restart."""
    server = start_corral_server("--server-url", "https://corral.test:9443")
    assert not pki.matches_hostname(served_certificate(server.https_port, None), "corral.test")
    assert verifies(server.https_port, server.ca_path, "corral.test")
    assert pki.matches_hostname(served_certificate(server.https_port, None), "corral.test")
    assert not pki.matches_hostname(served_certificate(server.https_port, "evil.test"),
                                    "evil.test")
    again = restart(start_corral_server, server)
    served = served_certificate(again.https_port, None)
    assert pki.matches_hostname(served, "corral.test")
    assert not pki.matches_hostname(served, "evil.test")
