"""`corral lb` configuration: schema and cross-checks name file, line, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from corral.config.errors import ConfigError
from corral.config.lb_load import load_lb_config


@pytest.fixture()
def certs(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("lb.test")
    other = ca.issue_cert("other.test")
    paths = {
        "chain": tmp_path / "chain.pem",
        "key": tmp_path / "key.pem",
        "other_key": tmp_path / "other-key.pem",
        "reversed": tmp_path / "reversed.pem",
    }
    paths["chain"].write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    paths["key"].write_bytes(leaf.private_key_pem.bytes())
    paths["other_key"].write_bytes(other.private_key_pem.bytes())
    intermediate = ca.create_child_ca()
    child = intermediate.issue_cert("lb.test")
    paths["reversed"].write_bytes(b"".join(p.bytes() for p in reversed(child.cert_chain_pems)))
    return paths


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lb.yml"
    path.write_text(text)
    return path


def config_text(cert: Path, key: Path, extra: str = "") -> str:
    return f"""\
upstreams:
  rancher:
    servers: ["127.0.0.1:8081"]
servers:
  - listen: 8443
    server_name: lb.test
    tls:
      certificates:
        - cert: {cert}
          key: {key}
    proxy_pass: rancher
{extra}"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_lb_config(path)
    return [str(p) for p in info.value.problems]


def test_valid_config_loads_with_defaults(tmp_path: Path, certs: dict[str, Path]) -> None:
    """A minimal valid file loads, defaults applied."""
    config = load_lb_config(write(tmp_path, config_text(certs["chain"], certs["key"])))
    assert config.servers[0].read_timeout == 900.0
    assert config.upstreams["rancher"].keepalive == 128
    assert config.worker_connections == 1024


def test_missing_certificate_file_names_line_and_key(
    tmp_path: Path, certs: dict[str, Path]
) -> None:
    """A certificate path that does not exist is reported at its line with a fix."""
    found = problems(write(tmp_path, config_text(tmp_path / "nope.pem", certs["key"])))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'lb.yml'}:9: servers[0].tls.certificates[0].cert:")
    assert "fix:" in found[0]


def test_key_that_does_not_match(tmp_path: Path, certs: dict[str, Path]) -> None:
    """A key for another certificate is reported on the key's line."""
    found = problems(write(tmp_path, config_text(certs["chain"], certs["other_key"])))
    assert any(":10: servers[0].tls.certificates[0].key:" in p and "match" in p for p in found)


def test_chain_in_wrong_order(tmp_path: Path, certs: dict[str, Path]) -> None:
    """Intermediates before the server certificate are reported with the order to use."""
    found = problems(write(tmp_path, config_text(certs["reversed"], certs["key"])))
    assert len(found) == 1, found  # no misleading "key does not match" on top
    assert "certificates[0].cert" in found[0] and "server certificate first" in found[0]


def test_unknown_key_suggests_the_right_one(tmp_path: Path, certs: dict[str, Path]) -> None:
    """A misspelt key is an error that says which key was meant."""
    text = config_text(certs["chain"], certs["key"]).replace("proxy_pass:", "proxy_pas:")
    found = problems(write(tmp_path, text))
    assert any("proxy_pas" in p and "proxy_pass" in p for p in found)


def test_undefined_upstream(tmp_path: Path, certs: dict[str, Path]) -> None:
    """proxy_pass must name a defined upstream."""
    text = config_text(certs["chain"], certs["key"]).replace("proxy_pass: rancher", "proxy_pass: x")
    found = problems(write(tmp_path, text))
    assert any(":11: servers[0].proxy_pass:" in p and "'x' is not defined" in p for p in found)


def test_port_both_tls_and_plain(tmp_path: Path, certs: dict[str, Path]) -> None:
    """One port cannot serve TLS and plain HTTP."""
    extra = "  - listen: 8443\n    server_name: other.test\n    proxy_pass: rancher\n"
    found = problems(write(tmp_path, config_text(certs["chain"], certs["key"], extra)))
    assert any("servers[1].listen" in p and "cannot be both" in p for p in found)


def test_redirect_rejects_host_variables(tmp_path: Path, certs: dict[str, Path]) -> None:
    """Only $server_name and $request_uri may appear in a redirect (no open redirect)."""
    extra = "  - listen: 8080\n    server_name: lb.test\n    redirect: https://$host$request_uri\n"
    found = problems(write(tmp_path, config_text(certs["chain"], certs["key"], extra)))
    assert any("servers[1].redirect" in p and "$host" in p for p in found)


def test_server_needs_exactly_one_action(tmp_path: Path, certs: dict[str, Path]) -> None:
    """A server with neither proxy_pass nor redirect is rejected."""
    extra = "  - listen: 8080\n    server_name: lb.test\n"
    found = problems(write(tmp_path, config_text(certs["chain"], certs["key"], extra)))
    assert any("servers[1]" in p and "proxy_pass" in p for p in found)
