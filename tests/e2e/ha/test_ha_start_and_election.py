"""Starting an HA install: the bootstrap admin is created once when servers start together, bad
`--etcd-*` flags stop the start with a message naming the flag and the fix, and the election
of the server that runs the duties moves when the leader dies or stops."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from corral import pki
from tests.e2e.ha.conftest import StartInstall
from tests.e2e.ha.harness import (
    ELECTION_TTL,
    LEADER_LINE,
    PASSWORD_LINE,
    TAKEOVER_SECONDS,
    HaServer,
    api_call,
    etcd_args,
    leader_of,
    login,
    new_prefix,
    run_to_exit,
    wait_for_line,
)
from tests.support.etcd_cluster import EtcdCluster
from tests.support.net import free_port, wait_until


def test_three_servers_starting_together_create_the_admin_once(
    start_install: StartInstall,
) -> None:
    """Without CORRAL_BOOTSTRAP_PASSWORD, of three servers started at once exactly one prints
    a generated password, and every server accepts it."""
    servers = start_install(3, env={"CORRAL_BOOTSTRAP_PASSWORD": ""})
    printed = [m.group(1) for s in servers for m in PASSWORD_LINE.finditer(s.output())]
    assert len(printed) == 1, [s.output() for s in servers]
    for server in servers:
        token = login(server, printed[0])
        me = api_call(server, "GET", "/v3/users?me=true", token).json()["data"][0]
        assert me["username"] == "admin" and me["mustChangePassword"] is True
    users = api_call(servers[0], "GET", "/v3/users", login(servers[0], printed[0])).json()
    assert [u["username"] for u in users["data"]].count("admin") == 1


def test_the_lead_moves_when_the_leader_is_killed_and_when_it_stops(
    start_install: StartInstall,
) -> None:
    """kill -9 of the leader: another server leads within the lease TTL plus a few seconds
    and runs the duties (an expired token is cleaned up); a leader stopped with SIGTERM
    resigns, so the last server leads well within the TTL."""
    servers = start_install(3, env={"CORRAL_TOKEN_CLEANUP_INTERVAL": "0.5"})
    first = leader_of(servers)
    assert sum(LEADER_LINE in s.output() for s in servers) == 1
    others = [s for s in servers if s is not first]
    marks = [len(s.output()) for s in others]
    killed_at = time.monotonic()
    first.kill()
    second = wait_until(
        lambda: next((s for s, m in zip(others, marks, strict=True)
                      if LEADER_LINE in s.output()[m:]), None),
        timeout=TAKEOVER_SECONDS, what="another server to become the leader")
    assert time.monotonic() - killed_at <= TAKEOVER_SECONDS
    assert second.leads()

    token = login(second)
    short = api_call(second, "POST", "/v3/tokens", token, json={"ttl": 1000,
                                                                "description": "short"})
    assert short.status_code == 201, short.text
    token_id = short.json()["id"]
    wait_until(lambda: api_call(second, "GET", f"/v3/tokens/{token_id}", token).status_code
               == 404, timeout=10, what="the new leader to delete the expired token")

    last = next(s for s in others if s is not second)
    mark = len(last.output())
    stopped_at = time.monotonic()
    second.stop()
    assert "no longer the leader (resigned)" in second.output()
    wait_for_line(last, LEADER_LINE, timeout=ELECTION_TTL, after=mark)
    assert time.monotonic() - stopped_at <= ELECTION_TTL + 1


def wrong_ca(directory: Path) -> Path:
    """A CA certificate that did not sign anything of the etcd cluster."""
    cert, _ = pki.create_ca("not the etcd CA")
    path = directory / "other-ca.pem"
    path.write_bytes(pki.certificate_pem(cert))
    return path


def foreign_client_cert(directory: Path) -> tuple[Path, Path]:
    """A client certificate and key from a CA etcd does not trust."""
    ca_cert, ca_key = pki.create_ca("a stranger's CA")
    cert, key = pki.issue_certificate(ca_cert, ca_key, common_name="stranger", server=False,
                                      client=True)
    cert_path, key_path = directory / "stranger.pem", directory / "stranger-key.pem"
    cert_path.write_bytes(pki.certificate_pem(cert))
    key_path.write_bytes(pki.private_key_pem(key))
    return cert_path, key_path


@pytest.mark.parametrize("case", ["wrong CA", "unreachable", "foreign client certificate",
                                  "certificate without key"])
def test_bad_etcd_flags_stop_the_start_naming_the_flag_and_the_fix(
    cluster: EtcdCluster, tmp_path: Path, case: str
) -> None:
    """A wrong --etcd-cafile, an endpoint nobody listens on, a client certificate etcd does not
    trust and a certificate without its key each stop the server (exit 1) with one error line
    naming the flag and what to do."""
    prefix = new_prefix()
    if case == "wrong CA":
        args = etcd_args(cluster, prefix, cafile=wrong_ca(tmp_path))
        expected = ["--etcd-cafile", "not signed by the CA", "give the CA"]
    elif case == "unreachable":
        args = etcd_args(cluster, prefix, endpoints=(f"https://127.0.0.1:{free_port()}",))
        expected = ["--etcd-servers", "connection refused"]
    elif case == "foreign client certificate":
        cert, key = foreign_client_cert(tmp_path)
        args = etcd_args(cluster, prefix, certfile=cert, keyfile=key)
        expected = ["--etcd-certfile", "refused the client certificate", "signed by the CA"]
    else:
        args = etcd_args(cluster, prefix)
        index = args.index("--etcd-keyfile")
        del args[index:index + 2]
        expected = ["--etcd-certfile", "without --etcd-keyfile", "needs both"]
    started = time.monotonic()
    done = run_to_exit(tmp_path / "server", args)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("corral server: error")]
    assert len(errors) == 1, done.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert "listening on" not in done.stderr
    assert time.monotonic() - started < 30
    assert not re.search(r"Traceback", done.stderr)


def seed_expiring_ca(cluster: EtcdCluster, prefix: str) -> str:
    """Put a CA with 20 days left into the install's store (as if it had aged); its PEM."""
    from corral.server.shared_ca import CA_KEY, encode_ca
    from corral.store.etcd import connect_etcd

    cert, key = pki.create_ca("corral-ca@aged", days=20)

    async def write() -> None:
        store = await connect_etcd(cluster.options(prefix=prefix))
        try:
            await store.create(CA_KEY, encode_ca(cert, key, "test"))
        finally:
            await store.close()

    asyncio.run(write())
    return pki.certificate_pem(cert).decode()


def served_issuer(server: HaServer) -> str:
    """The issuer CN of the certificate the server's HTTPS listener presents."""
    with socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as raw:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.issuer.rfc4514_string())


def test_the_leader_renews_a_shared_ca_that_is_due_and_every_server_follows(
    cluster: EtcdCluster, start_install: StartInstall
) -> None:
    """A shared CA with fewer than 30 days left is replaced by the leader (duty ca-renewal):
    every server then publishes the new CA as `cacerts` and serves a certificate it issued."""
    prefix = new_prefix()
    aged = seed_expiring_ca(cluster, prefix)
    servers = start_install(2, prefix=prefix, env={"CORRAL_CA_RENEWAL_INTERVAL": "0.5"})
    leader = leader_of(servers)
    wait_for_line(leader, "ca-renewal: replaced the shared CA CN=corral-ca@aged", timeout=30)

    def renewed_everywhere() -> bool:
        published = [api_call(s, "GET", "/cacerts").text for s in servers]
        return published[0] != aged and published == [published[0]] * len(servers)

    wait_until(renewed_everywhere, timeout=30, what="every server to publish the new CA")
    new_ca = x509.load_pem_x509_certificate(api_call(servers[0], "GET", "/cacerts").content)
    assert new_ca.not_valid_after_utc.year - new_ca.not_valid_before_utc.year >= 9
    wait_until(lambda: all(served_issuer(s) == new_ca.subject.rfc4514_string() for s in servers),
               timeout=30, what="every server to serve a certificate from the new CA")
