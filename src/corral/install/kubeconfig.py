"""`kube_config_<stem>.yml`: kubectl's configuration for the cluster (RKE writes the same).

The server is `https://<FQDN>[:port]`, the external load balancer; the CA data is the CA that
issued the load balancer's certificate when Corral knows it (the cluster CA with
`tls: {generate: true}`, the Secret's cacerts.pem otherwise), absent for a certificate from a
recognised CA; the user is `kube-admin-<cluster>` with an admin API token. Mode 0600.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from corral.install.desired import DesiredCluster

KUBECONFIG_MODE = 0o600
HTTPS_PORT = 443


def kubeconfig_path(desired: DesiredCluster) -> Path:
    """`kube_config_<stem>.yml` beside the cluster file."""
    return desired.source.with_name(f"kube_config_{desired.stem}.yml")


def server_url(fqdn: str, port: int = HTTPS_PORT) -> str:
    """`https://<FQDN>`, with `:port` unless it is 443."""
    return f"https://{fqdn}" if port == HTTPS_PORT else f"https://{fqdn}:{port}"


def admin_user(cluster_name: str) -> str:
    """The kubeconfig user, RKE's `kube-admin-<cluster>`."""
    return f"kube-admin-{cluster_name}"


def kubeconfig_yaml(cluster_name: str, url: str, ca_pem: str, token: str) -> str:
    """The kubeconfig text (pure)."""
    cluster: dict[str, str] = {"server": url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    user = admin_user(cluster_name)
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
        "users": [{"name": user, "user": {"token": token}}],
    }
    header = (
        f"# kubectl configuration for cluster {cluster_name}, written by `corral up`.\n"
        "# It holds an admin token: keep it as safe as the state file.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
