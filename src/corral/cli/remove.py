"""`corral remove`: stop the cluster's services and delete what `corral up` created
(RKE's `rke remove`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.install.progress import Progress

EPILOG = """\b
Examples:
  corral remove --config rancher-cluster.yml           # asks first
  corral remove --config examples/ha-local.yml --force # no question (scripts)
"""


@click.command(
    short_help="Stop the cluster and delete what `corral up` made (rke remove).",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--config", "config_path", default="cluster.yml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster file `corral up` was given.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The --state-dir `corral up` was given (the state file remembers it).")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
def remove(config_path: Path, state_dir: Path | None, force: bool) -> None:
    """Stop the external load balancer and every node's services, then delete the node
    directories, the state file, the kubeconfig and the load-balancer configurations. The
    cluster's data (users, settings, the etcd store) is gone afterwards: back up first.
    """
    from corral.install.state import StateError
    from corral.install.teardown import remove_cluster

    cluster_file = config_path.resolve()
    if not force:
        click.confirm(f"Are you sure you want to remove the cluster of {config_path}", abort=True)
    progress = Progress()
    try:
        result = remove_cluster(cluster_file, state_dir, progress)
    except StateError as exc:
        progress.fatal(str(exc))
        sys.exit(1)
    if result.unreachable:
        progress.fatal(f"nodes not cleaned up: {', '.join(result.unreachable)} (see above); the "
                       f"state file is kept: fix what the warnings say, then run "
                       f"`corral remove --config {config_path}` again")
        sys.exit(1)
    if result.left_running:
        progress.fatal(f"processes still running: {result.left_running}: stop them, then run "
                       f"`corral remove --config {config_path}` again")
        sys.exit(1)
    progress.info("Removed the cluster successfully")
