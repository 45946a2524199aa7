"""`trusted_proxies` is an engine feature: `corral lb` itself keeps X-Forwarded-Proto/-Port from
a trusted peer over HTTP/1.1 and HTTP/2, and replaces them for everyone else."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.ingress.conftest import StartBackends
from tests.e2e.ingress.harness import TRUSTED_PEER, UNTRUSTED_PEER
from tests.e2e.lb.harness import LbProcess, lb_config, make_certs


def forwarded(certs_ca: Path, port: int, source: str, http: str) -> dict[str, str]:
    """The X-Forwarded-* headers the backend saw for a curl request from `source`."""
    argv = [
        "curl",
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        str(certs_ca),
        http,
        "-w",
        "\n%{http_version}",
    ]
    argv += ["--interface", source, "-H", "X-Forwarded-Proto: wss", "-H", "X-Forwarded-Port: 8443"]
    done = subprocess.run(
        [*argv, f"https://127.0.0.1:{port}/echo"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    body, _, client_version = done.stdout.rpartition("\n")
    assert client_version == ("2" if http == "--http2" else "1.1")  # what curl spoke to the lb
    data = json.loads(body)
    assert data["http_version"] == "1.1"  # the upstream side is HTTP/1.1 either way
    return {n.lower(): v for n, v in data["headers"] if n.lower().startswith("x-forwarded-")}


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_lb_keeps_headers_only_from_trusted_peers(
    http: str, backends: StartBackends, tmp_path: Path
) -> None:
    """From the trusted peer Proto/Port are kept; from another they are the lb's own."""
    (backend,) = backends(1)
    certs = make_certs(tmp_path)
    config = lb_config(certs, [backend], trusted_proxies=[TRUSTED_PEER])
    lb = LbProcess(config, tmp_path)
    try:
        lb.wait_listening()
        trusted = forwarded(certs.ca_pem, lb.port, TRUSTED_PEER, http)
        other = forwarded(certs.ca_pem, lb.port, UNTRUSTED_PEER, http)
    finally:
        lb.stop()
    assert (trusted["x-forwarded-proto"], trusted["x-forwarded-port"]) == ("wss", "8443")
    assert trusted["x-forwarded-for"] == TRUSTED_PEER
    assert (other["x-forwarded-proto"], other["x-forwarded-port"]) == ("https", str(lb.port))
    assert other["x-forwarded-for"] == UNTRUSTED_PEER
