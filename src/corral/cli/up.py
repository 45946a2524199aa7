"""`corral up`: Rancher's HA install from RKE's cluster file (and the hidden `corral supervise`
that runs one node's services)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.install.progress import Progress

EPILOG = """\b
Writes beside the cluster file: kube_config_<stem>.yml and <stem>.corralstate (back both up),
<stem>.lb.yml (corral lb) and <stem>.nginx.conf (NGINX). See docs/up.md.

\b
Examples:
  corral up --config rancher-cluster.yml              # build (or reconcile) the cluster
  corral up --config rancher-cluster.yml --dry-run    # print the plan, change nothing
  corral up --config examples/ha-local.yml            # three nodes and corral lb on this machine
  corral up --config cluster.yml --state-dir /srv/corral   # node directories elsewhere
"""


def _config_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--config", "config_path", default="cluster.yml", show_default=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="RKE's cluster file (Rancher's template in `addons`).",
    )(function)


def _state_dir_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Where the node directories go. [default: <stem>.corral/ beside the cluster file]",
    )(function)


def load_desired(config_path: Path) -> object:
    """The validated cluster file; prints every problem and exits 1 when it has any."""
    from corral.install.validate import ClusterFileError, load_cluster_file

    if not config_path.is_file():
        click.echo(f"corral up: {config_path}: no such file: give the cluster file with "
                   "--config (e.g. --config rancher-cluster.yml)", err=True)
        sys.exit(1)
    try:
        desired = load_cluster_file(config_path.resolve())
    except ClusterFileError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        for warning in exc.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"corral up: {config_path}: {len(exc.problems)} problem(s)", err=True)
        sys.exit(1)
    return desired


@click.command(
    short_help="Rancher's HA install from RKE's cluster file (rke up).",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@_config_option
@click.option("--dry-run", is_flag=True, help="Print the plan and exit; touches nothing.")
@_state_dir_option
def up(config_path: Path, dry_run: bool, state_dir: Path | None) -> None:
    """Build the cluster the file describes, or bring a built one back to it: per node an etcd
    member (etcd role), `corral server` (controlplane) and `corral ingress` (worker), each
    supervised and restarted when it dies; with `load_balancer:` also the external corral lb.

    The plan compares the file with the state file and with what runs (probes); a re-run
    changes only what differs, and continues where a failed run stopped. On a running cluster
    a node added joins (etcd member add first), a node removed leaves (out of the load
    balancer, member remove, stopped, deleted), and changed settings or a new image tag are
    rolled out node by node through the load balancer. A lost state file is rebuilt from the
    nodes. See docs/up.md (Reconcile) and docs/upgrade.md.
    """
    from corral.install.apply import Applier, PreflightError
    from corral.install.desired import DesiredCluster
    from corral.install.prepare import prepare
    from corral.install.providers import ProviderError
    from corral.install.reconcile import reconcile
    from corral.install.reconcile_state import RebuildError, recover
    from corral.install.rolling import RollingError
    from corral.install.state import StateError

    desired = load_desired(config_path)
    assert isinstance(desired, DesiredCluster)
    progress = Progress()
    for warning in desired.warnings:
        progress.warn(warning)
    prepared = None
    try:
        if not recover(desired, state_dir, progress, dry_run):
            sys.exit(0)
        prepared = reconcile(prepare(desired, state_dir, progress))
        if dry_run:
            progress.plain(f"Plan for {config_path} (provider {desired.provider}, node "
                           f"directories under {prepared.state.base_dir}); nothing is changed:")
            for problem in prepared.preflight:
                progress.plain(f"  problem: [preflight] {problem.line()}")
            for line in prepared.plan.render():
                progress.plain(f"  {line}")
            sys.exit(1 if prepared.plan.problems or prepared.preflight else 0)
        result = Applier(prepared, progress).run()
    except PreflightError as exc:
        for problem in exc.problems:
            progress.fatal(f"node [{problem.node}]: {problem.message}", "preflight")
            progress.fatal(f"fix: {problem.fix}", "preflight")
        progress.fatal(f"{len(exc.problems)} preflight problem(s); nothing was changed on any "
                       f"node: fix them, then run `corral up --config {config_path}` again",
                       "preflight")
        sys.exit(1)
    except RollingError as exc:
        exc.report(progress, f"run `corral up --config {config_path}` again: it continues "
                             "from this step")
        sys.exit(1)
    except (ProviderError, StateError, RebuildError) as exc:
        progress.fatal(str(exc))
        sys.exit(1)
    finally:
        if prepared is not None:
            prepared.provider.close()
    done = "Finished building the cluster successfully" if result.changed else (
        "The cluster already runs as the cluster file asks: nothing changed")
    progress.info(done)
    progress.plain()
    progress.plain(f"  URL:             {result.url}")
    progress.plain(f"  Admin password:  {result.password}  (user admin)")
    progress.plain()
    progress.plain("Back up these files to a safe place (Rancher's HA guide, steps 9 and 11): "
                   "you need them to")
    progress.plain("re-run `corral up`, to upgrade and to `corral remove`; they hold the "
                   "cluster CA and admin secrets:")
    for path in result.backup:
        progress.plain(f"  {path}")
    progress.plain("The external load balancer's configuration, for corral lb and for NGINX: "
                   + ", ".join(p.name for p in result.written))


@click.command(hidden=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--node-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The node's directory (its run/supervisor.json says what to run).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the services' logs go. [default: <node-dir>/logs]")
def supervise(node_dir: Path, log_dir: Path | None) -> None:
    """Run one node's services (started by `corral up`; not for direct use)."""
    from corral.install.supervisor import run_supervisor

    sys.exit(run_supervisor(node_dir, log_dir))
