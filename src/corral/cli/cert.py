"""`corral cert rotate`: new certificates for a running cluster, node by node, without an
outage (RKE's `rke cert rotate`); with `--rotate-ca` a new cluster CA as well."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.install.progress import Progress

EPILOG = """\b
Renews the etcd members' (peer, client, server), the etcd client's, the servers' and the load
balancer's certificates from the cluster CA, one node at a time: each node leaves the load
balancer, gets its certificates, restarts what must restart, is healthy and comes back; then
corral lb reloads with its own. With --rotate-ca: first every node trusts the old and the new
CA, then the new CA issues every certificate, then only the new CA is trusted;
kube_config_<stem>.yml is rewritten with the new CA: give it to every client again. See
docs/upgrade.md.

\b
Examples:
  corral cert rotate --config rancher-cluster.yml              # new certificates, same CA
  corral cert rotate --config rancher-cluster.yml --rotate-ca  # a new CA and everything it signs
"""


GROUP_EPILOG = """\b
Examples:
  corral cert rotate --config rancher-cluster.yml              # new certificates, same CA
  corral cert rotate --config rancher-cluster.yml --rotate-ca  # a new CA and everything it signs
"""


@click.group(short_help="Certificates of a cluster built by corral up (rke cert).",
             epilog=GROUP_EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cert() -> None:
    """Certificates of a cluster built by `corral up`."""


@cert.command(
    short_help="New certificates, node by node, without an outage (rke cert rotate).",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--config", "config_path", default="cluster.yml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="RKE's cluster file the cluster was built from.")
@click.option("--rotate-ca", is_flag=True,
              help="Make a new cluster CA and issue every certificate from it.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the node directories are, if corral up was given --state-dir.")
def rotate(config_path: Path, rotate_ca: bool, state_dir: Path | None) -> None:
    """Issue every certificate of the cluster again and roll them out node by node; with
    --rotate-ca, a new cluster CA first. Run it again after a failure: it continues."""
    from corral.cli.up import load_desired
    from corral.install.cert_rotation_roll import rotate as run_rotation
    from corral.install.desired import DesiredCluster
    from corral.install.providers import ProviderError
    from corral.install.rolling import RollingError
    from corral.install.state import StateError

    desired = load_desired(config_path)
    assert isinstance(desired, DesiredCluster)
    progress = Progress()
    again = f"`corral cert rotate --config {config_path}{' --rotate-ca' if rotate_ca else ''}`"
    try:
        result = run_rotation(desired, progress, rotate_ca=rotate_ca, state_dir=state_dir)
    except RollingError as exc:
        exc.report(progress, f"run {again} again: it continues from the stage it stopped in")
        sys.exit(1)
    except (ProviderError, StateError) as exc:
        progress.fatal(str(exc))
        sys.exit(1)
    progress.info(f"Finished rotating the certificates ({', '.join(result.stages)}): "
                  f"{len(result.restarted)} services restarted, {len(result.reloaded)} "
                  "reloaded without a restart")
    if rotate_ca and result.kubeconfig is not None:
        progress.plain()
        progress.plain("The cluster CA is new. Give every client the new CA data:")
        progress.plain(f"  {result.kubeconfig} (certificate-authority-data)")
        progress.plain("and back up the state file again: it holds the new CA and its key.")
