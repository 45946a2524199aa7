"""The `--etcd-*` flag checks of `corral server` (corral.server.backend): what is refused before
anything connects, and how the etcd backend's errors are turned into flag names."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import pki
from corral.server.backend import (
    DEFAULT_ETCD_PREFIX,
    EtcdFlags,
    EtcdPlan,
    StoreStartError,
    check_etcd_flags,
    explain_connect_error,
    parse_endpoints,
)
from corral.store.base import StoreUnavailable
from corral.store.etcd import EtcdConfigError


def client_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA file, and a client certificate and key it issued."""
    ca_cert, ca_key = pki.create_ca("test CA")
    cert, key = pki.issue_certificate(ca_cert, ca_key, common_name="client", server=False,
                                      client=True)
    paths = directory / "ca.pem", directory / "client.pem", directory / "client-key.pem"
    paths[0].write_bytes(pki.certificate_pem(ca_cert))
    paths[1].write_bytes(pki.certificate_pem(cert))
    paths[2].write_bytes(pki.private_key_pem(key))
    return paths


def test_endpoints_are_split_trimmed_and_deduplicated() -> None:
    """A comma-separated list with spaces, a trailing slash and a repeat gives each URL once."""
    assert parse_endpoints(" https://a:2379/, https://b:2379,,https://a:2379 ") == (
        "https://a:2379", "https://b:2379")


@pytest.mark.parametrize("value", ["a:2379", "https://a", "ftp://a:2379", "https://a:2379/x",
                                   "https://a:notaport"])
def test_an_endpoint_that_is_not_a_client_url_is_refused(value: str) -> None:
    """Each member must be given as http(s)://host:port; the message names the flag and shows
    the form."""
    with pytest.raises(StoreStartError, match=r"--etcd-servers / CORRAL_ETCD_SERVERS: .* is not "
                       r"an etcd client URL: give each member as https://host:2379"):
        parse_endpoints(value)


def test_without_servers_the_store_is_embedded_and_file_flags_are_refused(tmp_path: Path) -> None:
    """No --etcd-servers: no plan; an --etcd-* file flag alone is a mistake worth naming."""
    assert check_etcd_flags(EtcdFlags()) is None
    with pytest.raises(StoreStartError, match="--etcd-cafile is given without --etcd-servers"):
        check_etcd_flags(EtcdFlags(cafile=tmp_path / "ca.pem"))


def test_good_flags_give_a_plan(tmp_path: Path) -> None:
    """Valid files and URLs become the plan handed to the etcd backend (prefix normalised)."""
    ca, cert, key = client_files(tmp_path)
    plan = check_etcd_flags(EtcdFlags("https://a:2379,https://b:2379", ca, cert, key, "/x/"))
    assert plan == EtcdPlan(("https://a:2379", "https://b:2379"), ca, cert, key, "/x")


def test_certificate_and_key_go_together(tmp_path: Path) -> None:
    """A client certificate without its key (or the reverse) is refused, naming both flags."""
    _, cert, key = client_files(tmp_path)
    with pytest.raises(StoreStartError, match="--etcd-certfile is given without --etcd-keyfile"):
        check_etcd_flags(EtcdFlags("https://a:2379", certfile=cert))
    with pytest.raises(StoreStartError, match="--etcd-keyfile is given without --etcd-certfile"):
        check_etcd_flags(EtcdFlags("https://a:2379", keyfile=key))


def test_a_key_that_does_not_match_names_the_keyfile_flag(tmp_path: Path) -> None:
    """The key of another certificate is refused before connecting, naming --etcd-keyfile."""
    ca, cert, _ = client_files(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_key = client_files(other)
    with pytest.raises(StoreStartError, match=r"--etcd-keyfile / CORRAL_ETCD_KEYFILE: the key in "
                       r".* does not match the certificate"):
        check_etcd_flags(EtcdFlags("https://a:2379", ca, cert, other_key))


def test_missing_or_non_pem_files_name_their_flag(tmp_path: Path) -> None:
    """A CA file that is absent, or holds no certificate, is refused naming --etcd-cafile."""
    with pytest.raises(StoreStartError, match=r"--etcd-cafile / CORRAL_ETCD_CAFILE: .* does not "
                       r"exist"):
        check_etcd_flags(EtcdFlags("https://a:2379", cafile=tmp_path / "nope.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(StoreStartError, match="--etcd-cafile / CORRAL_ETCD_CAFILE: "):
        check_etcd_flags(EtcdFlags("https://a:2379", cafile=junk))


def test_a_bad_prefix_is_refused() -> None:
    """The prefix must be a /path (the default shown as the example)."""
    with pytest.raises(StoreStartError, match=f"use a path such as {DEFAULT_ETCD_PREFIX}"):
        check_etcd_flags(EtcdFlags("https://a:2379", prefix="corral"))


PLAN = EtcdPlan(("https://a:2379",), None, None, None, DEFAULT_ETCD_PREFIX)


@pytest.mark.parametrize(("option", "flag"), [
    ("cafile", "--etcd-cafile / CORRAL_ETCD_CAFILE"),
    ("certfile", "--etcd-certfile / CORRAL_ETCD_CERTFILE"),
    ("keyfile", "--etcd-keyfile / CORRAL_ETCD_KEYFILE"),
    ("endpoints", "--etcd-servers / CORRAL_ETCD_SERVERS"),
])
def test_a_backend_config_error_is_shown_under_the_flag_of_its_option(option: str,
                                                                      flag: str) -> None:
    """The etcd backend names the option at fault; the message leads with our flag for it."""
    message = explain_connect_error(PLAN, EtcdConfigError("the fix is here", option))
    assert message == f"{flag}: the fix is here"


def test_an_unreachable_cluster_points_at_the_servers_flag() -> None:
    """No endpoint answering is --etcd-servers' problem, with what to check."""
    message = explain_connect_error(PLAN, StoreUnavailable("a:2379: connection refused"))
    assert message.startswith("--etcd-servers / CORRAL_ETCD_SERVERS: a:2379: connection refused")
    assert "check that etcd runs there" in message
