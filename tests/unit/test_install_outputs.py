"""The files `corral up` writes beside the cluster file: `<stem>.lb.yml` (a valid corral lb
configuration), `<stem>.nginx.conf` (Rancher's example filled in) and the kubeconfig."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from corral.config.lb_load import load_lb_config
from corral.install.kubeconfig import kubeconfig_path, kubeconfig_yaml, server_url
from corral.install.outputs import (
    CHECK_FALL,
    CHECK_INTERVAL_S,
    LbCertificate,
    LbListeners,
    lb_config_path,
    lb_yaml,
    nginx_conf,
    nginx_config_path,
)
from tests.support.install_cluster import FQDN, desired

ENDPOINTS = ["127.0.77.1:80", "127.0.77.2:80", "127.0.77.3:80"]
LISTENERS = LbListeners(("127.0.0.1", 8443), ("127.0.0.1", 8080))


def certificate(tmp_path: Path) -> LbCertificate:
    """Real certificate files (corral lb's loader checks they exist)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(FQDN)
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return LbCertificate(str(chain), str(key))


def test_outputs_are_named_after_the_cluster_file() -> None:
    """`<stem>.lb.yml`, `<stem>.nginx.conf`, `kube_config_<stem>.yml` beside the file."""
    cluster = desired(Path("/srv/x/rancher-cluster.yml"))
    assert lb_config_path(cluster) == Path("/srv/x/rancher-cluster.lb.yml")
    assert nginx_config_path(cluster) == Path("/srv/x/rancher-cluster.nginx.conf")
    assert kubeconfig_path(cluster) == Path("/srv/x/kube_config_rancher-cluster.yml")


def test_lb_yml_is_a_valid_corral_lb_configuration(tmp_path: Path) -> None:
    """corral lb's own loader accepts it: TLS for the FQDN, the nodes' port 80 with /healthz
    checks, and port 80 redirecting to the HTTPS port."""
    path = tmp_path / "c.lb.yml"
    path.write_text(lb_yaml(desired(), ENDPOINTS, LISTENERS, certificate(tmp_path)))
    config = load_lb_config(path)
    upstream = config.upstreams["rancher"]
    assert upstream.servers == ENDPOINTS
    assert upstream.health_check is not None and upstream.health_check.path == "/healthz"
    assert upstream.health_check.fall == CHECK_FALL
    assert upstream.health_check.interval == CHECK_INTERVAL_S
    https, http = config.servers
    assert https.address == ("127.0.0.1", 8443) and https.tls is not None
    assert https.names == [FQDN] and https.read_timeout == 900
    assert http.redirect == "https://$server_name:8443$request_uri" and http.redirect_status == 301


def test_nginx_conf_is_rancher_example_filled_in() -> None:
    """Rancher's example NGINX configuration with the nodes, the FQDN and the ports."""
    text = nginx_conf(desired(), ENDPOINTS, LISTENERS, LbCertificate("/c.pem", "/k.pem"))
    for endpoint in ENDPOINTS:
        assert f"server {endpoint};" in text
    assert "listen 127.0.0.1:8443 ssl http2;" in text
    assert f"server_name {FQDN};" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    assert "proxy_read_timeout 900s;" in text and "proxy_buffering off;" in text
    assert "return 301 https://$server_name:8443$request_uri;" in text
    assert text.count("{") == text.count("}")


def test_default_ports_are_rancher_443_and_80() -> None:
    """Without load_balancer ports: listen 443, the redirect to https:// without a port."""
    listeners = LbListeners(("", 443), ("", 80))
    text = nginx_conf(desired(), ENDPOINTS, listeners, LbCertificate("/c", "/k", True))
    assert "listen 443 ssl http2;" in text and "listen 80;" in text
    assert "return 301 https://$server_name$request_uri;" in text


def test_kubeconfig_points_at_the_fqdn_with_ca_and_token() -> None:
    """kubectl's format: server https://FQDN:port, the CA data, RKE's kube-admin user."""
    text = kubeconfig_yaml("local", server_url(FQDN, 8443), "CA-PEM", "token-abc:secret")
    data = yaml.safe_load(text)
    cluster = data["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{FQDN}:8443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA-PEM"
    assert data["users"][0] == {"name": "kube-admin-local", "user": {"token": "token-abc:secret"}}
    assert data["current-context"] == "local"


def test_kubeconfig_without_a_known_ca_trusts_the_system() -> None:
    """A certificate from a recognised CA: no CA data; port 443 is left out of the URL."""
    data = yaml.safe_load(kubeconfig_yaml("local", server_url(FQDN), "", "t"))
    assert data["clusters"][0]["cluster"] == {"server": f"https://{FQDN}"}
