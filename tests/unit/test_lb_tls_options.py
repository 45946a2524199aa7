"""`corral lb` keys `tls.groups`, `tls.hsts`, `add_response_headers` and
`hide_response_headers`: defaults, and every check names line, key and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import trustme

from corral.config.errors import ConfigError
from corral.config.lb import DEFAULT_TLS_GROUPS, LbConfig
from corral.config.lb_load import load_lb_config


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate chain and key for lb.test."""
    directory = tmp_path_factory.mktemp("pem")
    leaf = trustme.CA().issue_cert("lb.test", "other.test")
    chain, key = directory / "chain.pem", directory / "key.pem"
    chain.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return chain, key


def config(
    tmp_path: Path, pem: tuple[Path, Path], tls: str = "", server: str = "", more: str = ""
) -> Path:
    """An lb file: one HTTPS server (lines 6-12 + `tls` under tls:, then `server` keys),
    then `more` server blocks."""
    chain, key = pem
    text = f"""\
upstreams:
  app:
    servers: ["127.0.0.1:8081"]
servers:
  - listen: 8443
    server_name: lb.test
    proxy_pass: app
    tls:
      certificates:
        - cert: {chain}
          key: {key}
{textwrap.indent(textwrap.dedent(tls), "      ")}
{textwrap.indent(textwrap.dedent(server), "    ")}
{textwrap.indent(textwrap.dedent(more), "  ")}
"""
    path = tmp_path / "lb.yml"
    path.write_text(text)
    return path


def load(path: Path) -> LbConfig:
    """The loaded configuration."""
    return load_lb_config(path)


def problems(path: Path) -> list[str]:
    """Every problem `corral lb --check` would print for the file."""
    with pytest.raises(ConfigError) as info:
        load_lb_config(path)
    return [str(p) for p in info.value.problems]


def test_defaults_x25519_first_no_hsts_no_header_changes(
    tmp_path: Path, pem: tuple[Path, Path]
) -> None:
    """Without the new keys: groups X25519, P-256, P-384; no HSTS; nothing added or hidden."""
    server = load(config(tmp_path, pem)).servers[0]
    assert server.tls is not None
    assert server.tls.groups == ["X25519", "P-256", "P-384"] == list(DEFAULT_TLS_GROUPS)
    assert server.tls.hsts is None
    assert server.add_response_headers == {}
    assert server.hide_response_headers == []


def test_groups_in_any_openssl_spelling_load(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """OpenSSL's other names of the same groups (prime256v1, secp384r1, x25519) are accepted."""
    path = config(tmp_path, pem, tls="groups: [x25519, prime256v1, secp384r1, X448, P-521]")
    tls = load(path).servers[0].tls
    assert tls is not None
    assert tls.groups == ["x25519", "prime256v1", "secp384r1", "X448", "P-521"]


def test_unknown_group_named_at_its_line(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """A group OpenSSL does not know is reported at its list item, with names that work."""
    found = problems(config(tmp_path, pem, tls="groups:\n  - X25519\n  - curve9000\n"))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'lb.yml'}:14: servers[0].tls.groups[1]:")
    assert "'curve9000'" in found[0]
    assert "fix: use group names OpenSSL knows" in found[0]


def test_group_list_syntax_is_not_one_name(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """`X25519:P-256` in one item is refused (each item is one name), as is an empty list."""
    one_item = problems(config(tmp_path, pem, tls="groups: ['X25519:P-256']"))
    assert len(one_item) == 1
    assert "servers[0].tls.groups[0]:" in one_item[0]
    assert "servers[0].tls.groups:" in problems(config(tmp_path, pem, tls="groups: []"))[0]


def test_duplicate_group_refused(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """The same group twice (in any case) is reported at the second one."""
    found = problems(config(tmp_path, pem, tls="groups: [X25519, P-256, x25519]"))
    assert len(found) == 1
    assert "servers[0].tls.groups[2]: lists x25519 twice" in found[0]


def test_groups_must_agree_on_a_shared_port(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """Two TLS servers on one port with different groups are refused (SNI comes too late)."""
    chain, key = pem
    other = f"""\
        - listen: 8443
          server_name: other.test
          proxy_pass: app
          tls:
            certificates: [{{cert: {chain}, key: {key}}}]
            groups: [P-384]
        """
    found = problems(config(tmp_path, pem, more=other))
    assert len(found) == 1
    assert "servers[1].tls.groups: port 8443 is also served by servers[0]" in found[0]
    assert "fix: give every server on this port the same tls.groups" in found[0]


def test_hsts_header_value(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """`tls.hsts` renders max-age in seconds, then includeSubDomains and preload."""
    path = config(tmp_path, pem, tls="hsts: {max_age: 730d}")
    tls = load(path).servers[0].tls
    assert tls is not None and tls.hsts is not None
    assert tls.hsts.header_value == "max-age=63072000"
    path = config(tmp_path, pem, tls="hsts: {include_subdomains: true, preload: true}")
    tls = load(path).servers[0].tls
    assert tls is not None and tls.hsts is not None
    assert tls.hsts.header_value == "max-age=31536000; includeSubDomains; preload"


def test_hsts_preload_requirements(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """preload without includeSubDomains, or under a year, is refused with what to set."""
    found = problems(config(tmp_path, pem, tls="hsts: {max_age: 1d, preload: true}"))
    assert len(found) == 2
    assert any("tls.hsts.preload:" in p and "include_subdomains: true" in p for p in found)
    assert any("tls.hsts.max_age:" in p and "max_age: 365d" in p for p in found)


def test_hsts_fractional_max_age_refused(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """max-age is whole seconds: 1.5 is refused."""
    found = problems(config(tmp_path, pem, tls="hsts: {max_age: 1.5}"))
    assert len(found) == 1
    assert "tls.hsts.max_age: must be a whole number of seconds" in found[0]


def test_response_headers_load(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """Valid header names and values load as written, in order."""
    server = """\
        add_response_headers:
          X-Frame-Options: SAMEORIGIN
          Content-Security-Policy: "default-src 'self'; frame-ancestors 'none'"
        hide_response_headers: [Server, X-Powered-By]
        """
    loaded = load(config(tmp_path, pem, server=server)).servers[0]
    assert list(loaded.add_response_headers) == ["X-Frame-Options", "Content-Security-Policy"]
    assert loaded.hide_response_headers == ["Server", "X-Powered-By"]


@pytest.mark.parametrize(
    ("server", "key", "words"),
    [
        ("add_response_headers: {'X Bad': v}", "add_response_headers.X Bad", "not a header name"),
        ("add_response_headers: {X-A: ''}", "add_response_headers.X-A", "is empty"),
        (
            'add_response_headers: {X-A: "a\\r\\nSet-Cookie: x=1"}',
            "add_response_headers.X-A",
            "line break",
        ),
        ("add_response_headers: {X-A: ' padded'}", "add_response_headers.X-A", "trailing spaces"),
        (
            "add_response_headers: {Connection: close}",
            "add_response_headers.Connection",
            "message framing",
        ),
        (
            "hide_response_headers: [Transfer-Encoding]",
            "hide_response_headers[0]",
            "message framing",
        ),
        ("hide_response_headers: [Content-Length]", "hide_response_headers[0]", "message framing"),
        ("hide_response_headers: [Server, server]", "hide_response_headers[1]", "twice"),
        (
            "add_response_headers: {Strict-Transport-Security: max-age=1}",
            "add_response_headers.Strict-Transport-Security",
            "tls.hsts",
        ),
    ],
)
def test_bad_response_header_settings(
    tmp_path: Path, pem: tuple[Path, Path], server: str, key: str, words: str
) -> None:
    """Each bad add/hide setting is one problem at its key, saying why, with a fix."""
    found = problems(config(tmp_path, pem, server=server))
    assert len(found) == 1, found
    assert f": servers[0].{key}:" in found[0]
    assert words in found[0]
    assert "— fix:" in found[0]


def test_hsts_header_refused_on_plain_http(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """Strict-Transport-Security added on a plain-HTTP server is refused: browsers ignore it."""
    plain = """\
        - listen: 8080
          server_name: lb.test
          redirect: https://$server_name$request_uri
          add_response_headers: {Strict-Transport-Security: max-age=1}
        """
    found = problems(config(tmp_path, pem, more=plain))
    assert len(found) == 1
    assert "servers[1].add_response_headers.Strict-Transport-Security:" in found[0]
    assert "RFC 6797" in found[0]


def test_hsts_is_not_a_key_of_plain_servers(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    """`hsts` lives under `tls`: a plain server cannot have it at all."""
    plain = """\
        - listen: 8080
          server_name: lb.test
          redirect: https://$server_name$request_uri
          hsts: {max_age: 1d}
        """
    found = problems(config(tmp_path, pem, more=plain))
    assert len(found) == 1
    assert "servers[1].hsts: unknown key `hsts`" in found[0]
