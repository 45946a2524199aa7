"""doctor's command line (pure parts): the URL, --nodes, --idle and the other options become a
Target, or a usage error naming the flag (exit status 64, above any count of failures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from corral.cli.doctor import USAGE_EXIT, build_target, doctor
from corral.doctor.model import Target, TargetError, parse_node, parse_url


def _target(url: str = "https://rancher.test", **options: Any) -> Target:
    defaults: dict[str, Any] = dict(ca=None, nodes=(), idle="75s", http_port=80, token=None,
                                       ca_checksum=None, no_cacerts=False, timeout="10s")
    defaults.update(options)
    return build_target(url, **defaults)


@pytest.mark.parametrize(
    ("url", "fqdn", "port"),
    [("https://Rancher.Test", "rancher.test", 443), ("https://rancher.test:8443/", "rancher.test",
                                                     8443), ("https://[::1]:9443", "::1", 9443)],
)
def test_urls_doctor_accepts(url: str, fqdn: str, port: int) -> None:
    """https://FQDN[:port][/] → the lower-case name and the port."""
    assert parse_url(url) == (fqdn, port)


@pytest.mark.parametrize(
    ("url", "words"),
    [("http://rancher.test", "scheme must be https"), ("https://rancher.test/v3", "no path"),
     ("https://u:p@rancher.test", "--token"), ("https://rancher.test:99999", "port"),
     ("rancher.test", "scheme")],
)
def test_urls_doctor_refuses_say_how_to_write_them(url: str, words: str) -> None:
    """A URL doctor cannot use: the message names the URL and the form to use."""
    with pytest.raises(TargetError, match=words):
        parse_url(url)


def test_nodes_are_origins() -> None:
    """--nodes entries are http(s) origins; a path or another scheme is refused."""
    assert parse_node("http://10.0.0.11/") == "http://10.0.0.11"
    with pytest.raises(TargetError, match="--nodes"):
        parse_node("10.0.0.11")
    with pytest.raises(TargetError, match="origin only"):
        parse_node("http://10.0.0.11/healthz")


def test_target_from_options() -> None:
    """Comma-separated and repeated --nodes, durations, --http-port 0 meaning no check."""
    target = _target(nodes=("http://n1,http://n2", "http://n3"), idle="3s", http_port=0,
                     timeout="500ms")
    assert target.nodes == ("http://n1", "http://n2", "http://n3")
    assert target.idle_s == 3.0 and target.timeout_s == 0.5
    assert target.http_port is None
    assert _target().url == "https://rancher.test"
    assert _target("https://rancher.test:8443").authority == "rancher.test:8443"


def test_token_is_not_in_the_targets_repr() -> None:
    """The token never shows when a Target is printed."""
    assert "secret" not in repr(_target(token="token-abc:secret"))


@pytest.mark.parametrize(
    ("options", "flag"),
    [({"idle": "soon"}, "--idle"), ({"timeout": "0s"}, "--timeout"),
     ({"ca_checksum": "abc"}, "--ca-checksum"), ({"http_port": 70000}, "--http-port"),
     ({"nodes": ("ftp://n1",)}, "--nodes")],
)
def test_bad_options_are_usage_errors_naming_the_flag(options: dict[str, Any],
                                                      flag: str) -> None:
    """Each bad option is a usage error that names it and exits 64."""
    with pytest.raises(click.UsageError, match=flag) as raised:
        _target(**options)
    assert raised.value.exit_code == USAGE_EXIT


def test_command_line_usage_errors_exit_64(tmp_path: Path) -> None:
    """click's own errors (an unknown option, a missing --ca file) exit 64 too."""
    runner = CliRunner()
    assert runner.invoke(doctor, ["https://rancher.test", "--bogus"]).exit_code == USAGE_EXIT
    missing = runner.invoke(doctor, ["https://rancher.test", "--ca", str(tmp_path / "no.pem")])
    assert missing.exit_code == USAGE_EXIT
    assert runner.invoke(doctor, ["http://rancher.test"]).exit_code == USAGE_EXIT
