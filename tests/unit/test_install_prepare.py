"""What `corral up` derives before it plans: the base directory, the load balancer's listeners
and certificate, and the files `corral remove` deletes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from corral.install.cluster_pki import ensure_pki
from corral.install.desired import LoadBalancerSpec
from corral.install.outputs import PLACEHOLDER_CERT
from corral.install.prepare import choose_base_dir, lb_certificate, lb_listeners
from corral.install.providers.local import LocalProvider
from corral.install.state import new_state
from corral.install.teardown import output_files
from tests.support.install_cluster import desired

CLUSTER = Path("/srv/c/rancher-cluster.yml")


def test_base_dir_defaults_beside_the_cluster_file_and_follows_state_dir() -> None:
    """`<stem>.corral/` beside the file, or --state-dir, for a new cluster."""
    cluster = desired(CLUSTER)
    assert choose_base_dir(cluster, None, None) == (Path("/srv/c/rancher-cluster.corral"), "")
    assert choose_base_dir(cluster, None, Path("/x/nodes")) == (Path("/x/nodes"), "")


def test_a_built_cluster_keeps_its_base_dir() -> None:
    """A recorded base directory wins; another --state-dir is a problem that names both."""
    cluster = desired(CLUSTER)
    state = new_state(cluster, ensure_pki(cluster, None)[0], Path("/built/here"))
    assert choose_base_dir(cluster, state, None) == (Path("/built/here"), "")
    base, problem = choose_base_dir(cluster, state, Path("/elsewhere"))
    assert base == Path("/built/here") and "--state-dir /built/here" in problem


def test_lb_listeners_from_the_file_or_rancher_defaults() -> None:
    """`load_balancer.listen`/`http_listen`; without `load_balancer:` Rancher's 443 and 80."""
    assert lb_listeners(desired()).https == ("127.0.0.1", 8443)
    assert lb_listeners(desired()).http == ("127.0.0.1", 8080)
    only_https = desired(load_balancer=LoadBalancerSpec(listen=":443", generate=True))
    assert lb_listeners(only_https).https == ("0.0.0.0", 443)
    assert lb_listeners(only_https).http is None
    assert lb_listeners(desired(with_lb=False)).https == ("", 443)


def test_lb_certificate_is_generated_given_or_rancher_placeholder() -> None:
    """generate → the lb directory's files; cert_file/key_file → those; none → placeholders."""
    provider = LocalProvider(Path("/srv/c/rancher-cluster.corral"))
    generated = lb_certificate(desired(), provider)
    assert generated.cert == "/srv/c/rancher-cluster.corral/lb/pki/lb.pem"
    given = replace(desired(), load_balancer=LoadBalancerSpec(
        listen=":443", cert_file=Path("/certs/mine.pem"), key_file=Path("/certs/mine-key.pem")))
    assert lb_certificate(given, provider).cert == "/certs/mine.pem"
    placeholder = lb_certificate(desired(with_lb=False), provider)
    assert placeholder.cert == PLACEHOLDER_CERT and placeholder.placeholder


def test_remove_deletes_exactly_the_four_outputs() -> None:
    """kubeconfig, state, lb.yml, nginx.conf beside the cluster file."""
    assert [p.name for p in output_files(CLUSTER)] == [
        "kube_config_rancher-cluster.yml", "rancher-cluster.corralstate",
        "rancher-cluster.lb.yml", "rancher-cluster.nginx.conf",
    ]


def test_local_provider_refuses_non_loopback_and_split_addresses() -> None:
    """A local node is one 127.x address; others are refused with the way out."""
    provider = LocalProvider(Path("/tmp/x"))
    node = desired().nodes[0]
    assert provider.check_node(node) == []
    remote = replace(node, address="10.0.0.5", internal_address="10.0.0.5")
    assert any("not a loopback address" in p for p in provider.check_node(remote))
    split = replace(node, internal_address="127.0.77.9")
    assert any("remove internal_address" in p for p in provider.check_node(split))
