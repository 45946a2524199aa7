"""Key-exchange groups of `corral lb` (`tls.groups`): X25519, P-256 and P-384 by default, in
that order of preference; a configured list replaces them; `--check` refuses unknown names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.lb.clients import s_client
from tests.e2e.lb.harness import REPO_ROOT, Certs
from tests.e2e.lb_tls.stack import OptionsLb
from tests.support.procs import corral_argv

# How openssl s_client names the key exchange it got ("Server Temp Key: ...").
TEMP_KEY = {
    "X25519": "X25519, 253 bits",
    "P-256": "ECDH, prime256v1, 256 bits",
    "P-384": "ECDH, secp384r1, 384 bits",
}


def temp_key(certs: Certs, port: int, *args: str) -> str | None:
    """The key exchange of one handshake (None when the handshake failed)."""
    result = s_client(certs, port, "-verify_return_error", *args)
    for line in result.stdout.splitlines():
        if line.startswith("Server Temp Key: ") and result.returncode == 0:
            return line.removeprefix("Server Temp Key: ")
    return None


@pytest.mark.parametrize("group", ["X25519", "P-256", "P-384"])
def test_default_groups_each_handshake(certs: Certs, options_lb: OptionsLb, group: str) -> None:
    """A TLS 1.3 client offering only X25519, P-256 or P-384 handshakes with that group."""
    found = temp_key(certs, options_lb.ports.main, "-tls1_3", "-groups", group)
    assert found == TEMP_KEY[group]


@pytest.mark.parametrize("group", ["P-521", "X448", "ffdhe2048"])
def test_groups_outside_the_default_refused(
    certs: Certs, options_lb: OptionsLb, group: str
) -> None:
    """A client offering only P-521, X448 or ffdhe2048 cannot handshake: they are not offered."""
    assert temp_key(certs, options_lb.ports.main, "-groups", group) is None


def test_x25519_preferred_over_the_clients_order(certs: Certs, options_lb: OptionsLb) -> None:
    """TLS 1.2 client listing P-384, P-256, X25519: the server picks its own first, X25519.
    (A TLS 1.2 client must list P-256 anyway: the certificate is an ECDSA P-256 one.)"""
    found = temp_key(certs, options_lb.ports.main, "-tls1_2", "-groups", "P-384:P-256:X25519")
    assert found == TEMP_KEY["X25519"]


def test_p256_preferred_over_p384(certs: Certs, options_lb: OptionsLb) -> None:
    """TLS 1.2 client listing P-384 then P-256: the server's order wins, P-256."""
    found = temp_key(certs, options_lb.ports.main, "-tls1_2", "-groups", "P-384:P-256")
    assert found == TEMP_KEY["P-256"]


def test_configured_groups_replace_the_default(certs: Certs, options_lb: OptionsLb) -> None:
    """`groups: [P-384, P-256]`: X25519 is refused, and P-384 is preferred over P-256."""
    port = options_lb.ports.own_groups
    assert temp_key(certs, port, "-groups", "X25519") is None
    assert temp_key(certs, port, "-tls1_2", "-groups", "P-256:P-384") == TEMP_KEY["P-384"]
    assert temp_key(certs, port, "-tls1_3", "-groups", "P-256") == TEMP_KEY["P-256"]


def test_check_refuses_a_group_openssl_does_not_know(
    certs: Certs, options_lb: OptionsLb, tmp_path: Path
) -> None:
    """`corral lb --check` exits 1 naming the line, the key and the unknown group, with a fix."""
    config = yaml.safe_load(options_lb.lb.config_path.read_text())
    config["servers"][4]["tls"]["groups"] = ["X25519", "curve9000"]
    path = tmp_path / "lb.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        corral_argv("lb", "--check", "--config", str(path)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = next(line for line in output.splitlines() if "curve9000" in line)
    assert f"{path}:" in line
    assert "servers[4].tls.groups[1]:" in line
    assert "does not know the key-exchange group 'curve9000'" in line
    assert "— fix: use group names OpenSSL knows" in line
