"""`corral etcd`: snapshots of the cluster's etcd (RKE's `rke etcd snapshot-save`,
`snapshot-restore`), `snapshot-list`, and the hidden `snapshot-loop` each etcd node runs for
recurring snapshots."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from corral.install.progress import Progress

if TYPE_CHECKING:
    from corral.install.prepare import Prepared

EPILOG = """\b
Snapshots live on every etcd node in /opt/corral/etcd-snapshots/ (with the local provider:
<node>/rootfs/opt/corral/etcd-snapshots/), each with a .sha256 beside it. See docs/etcd.md.

\b
Examples:
  corral etcd snapshot-save --config rancher-cluster.yml --name before-upgrade
  corral etcd snapshot-list --config rancher-cluster.yml
  corral etcd snapshot-restore --config rancher-cluster.yml --name before-upgrade
"""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _config_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--config", "config_path", default="cluster.yml", show_default=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The cluster file `corral up` was given.",
    )(function)


def _state_dir_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="The --state-dir `corral up` was given (the state file remembers it).",
    )(function)


@click.group(short_help="etcd snapshots: save, list, restore (rke etcd).", epilog=EPILOG,
             context_settings=CONTEXT)
def etcd() -> None:
    """Snapshots of the cluster's etcd: `snapshot-save` takes one (on every etcd node, with a
    sha256 checksum), `snapshot-list` shows them, `snapshot-restore` puts the whole cluster back
    to one."""


def _run(config_path: Path, state_dir: Path | None, what: str,
         work: Callable[[Prepared, Progress], None]) -> None:
    """Open the cluster, run `work(prepared, progress)`, report SnapshotError as FATA lines."""
    from corral.cli.up import load_desired
    from corral.install.desired import DesiredCluster
    from corral.install.etcd_snapshot_node import SnapshotNodeError
    from corral.install.etcd_snapshot_save import SnapshotError, open_cluster
    from corral.install.providers import ProviderError
    from corral.install.state import StateError

    desired = load_desired(config_path)
    assert isinstance(desired, DesiredCluster)
    progress = Progress()
    prepared: Prepared | None = None
    try:
        prepared = open_cluster(desired, state_dir, progress)
        work(prepared, progress)
    except SnapshotError as exc:
        progress.fatal(exc.message, "etcd")
        progress.fatal(f"fix: {exc.fix}", "etcd")
        sys.exit(1)
    except SnapshotNodeError as exc:
        progress.fatal(f"{what}: {exc}", "etcd")
        progress.fatal("fix: check that the node is reachable and its disk has room, then run "
                       "the command again", "etcd")
        sys.exit(1)
    except (ProviderError, StateError) as exc:
        progress.fatal(f"{what}: {exc}", "etcd")
        sys.exit(1)
    finally:
        if prepared is not None:
            prepared.provider.close()


SAVE_EPILOG = """\b
Examples:
  corral etcd snapshot-save --config rancher-cluster.yml --name before-upgrade
  corral etcd snapshot-save --config rancher-cluster.yml   # corral_etcd_snapshot_<UTC time>
"""

LIST_EPILOG = """\b
Examples:
  corral etcd snapshot-list --config rancher-cluster.yml
"""

RESTORE_EPILOG = """\b
Examples:
  corral etcd snapshot-restore --config rancher-cluster.yml --name before-upgrade
  corral etcd snapshot-restore --config cluster.yml --name 2026-12-01T18:00:02Z_etcd
"""


@etcd.command("snapshot-save", context_settings=CONTEXT, epilog=SAVE_EPILOG,
              short_help="Take a snapshot of etcd onto every etcd node.")
@_config_option
@_state_dir_option
@click.option("--name", default=None,
              help="The snapshot's name. [default: corral_etcd_snapshot_<UTC time>]")
def snapshot_save(config_path: Path, state_dir: Path | None, name: str | None) -> None:
    """Take a consistent snapshot of etcd (from the first healthy member) and store the same
    file, with its sha256, on every etcd node."""
    from corral.install.etcd_snapshot_files import SnapshotNameError, check_name
    from corral.install.etcd_snapshot_save import SnapshotError, default_name, save_snapshot
    try:
        chosen = check_name(name) if name is not None else default_name()
    except SnapshotNameError as exc:
        raise click.BadParameter(str(exc).removeprefix("--name "), param_hint="--name") from None

    def work(prepared: Prepared, progress: Progress) -> None:
        saved = save_snapshot(prepared, chosen, progress)
        if saved.failed:
            raise SnapshotError(
                f"snapshot [{chosen}] is on {', '.join(saved.nodes)} but not on: "
                f"{'; '.join(saved.failed)}",
                "fix those nodes and take a new snapshot (a restore copies the snapshot to a "
                "node that lacks it)")
        progress.info(f"Finished saving snapshot [{chosen}] on {len(saved.nodes)} etcd "
                      f"node(s): {', '.join(saved.nodes)} (sha256 {saved.digest})", "etcd")

    _run(config_path, state_dir, "snapshot-save", work)


@etcd.command("snapshot-list", context_settings=CONTEXT, epilog=LIST_EPILOG,
              short_help="List the snapshots on the etcd nodes.")
@_config_option
@_state_dir_option
def snapshot_list(config_path: Path, state_dir: Path | None) -> None:
    """List every snapshot of the etcd nodes, its size, and which nodes have a good copy."""
    from corral.install.etcd_snapshot_save import list_snapshots, render_list

    def work(prepared: Prepared, progress: Progress) -> None:
        nodes = [n.name for n in prepared.desired.nodes_with("etcd")]
        for line in render_list(list_snapshots(prepared), nodes):
            progress.plain(line)

    _run(config_path, state_dir, "snapshot-list", work)


@etcd.command("snapshot-restore", context_settings=CONTEXT, epilog=RESTORE_EPILOG,
              short_help="Restore the whole cluster from a snapshot.")
@_config_option
@_state_dir_option
@click.option("--name", required=True, help="The snapshot to restore (see snapshot-list).")
def snapshot_restore(config_path: Path, state_dir: Path | None, name: str) -> None:
    """Check the snapshot on every etcd node, stop every node's services, restore every etcd
    member from the snapshot as a new cluster, start everything and wait until it is healthy.
    Everything written after the snapshot is gone afterwards."""
    from corral.install.etcd_snapshot_files import SnapshotNameError, check_name
    from corral.install.etcd_snapshot_restore import restore_snapshot

    try:
        check_name(name)
    except SnapshotNameError as exc:
        raise click.BadParameter(str(exc).removeprefix("--name "), param_hint="--name") from None

    def work(prepared: Prepared, progress: Progress) -> None:
        done = restore_snapshot(prepared, name, progress)
        progress.info(f"Finished restoring snapshot [{name}] on every etcd node from node "
                      f"[{done.source}]'s copy ({done.took_s:.1f}s)", "etcd")

    _run(config_path, state_dir, "snapshot-restore", work)


@etcd.command("snapshot-loop", hidden=True, context_settings=CONTEXT)
@click.option("--snapshot-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--creation", required=True, help="Time between snapshots (6h, 30s).")
@click.option("--retention", required=True, help="How long recurring snapshots stay (24h).")
@click.option("--etcdctl", default="/usr/bin/etcdctl", show_default=True)
@click.option("--endpoint", required=True, help="The member's client URL.")
@click.option("--cacert", required=True)
@click.option("--cert", required=True)
@click.option("--key", required=True)
@click.argument("member", nargs=-1, type=click.UNPROCESSED)
def snapshot_loop(snapshot_dir: Path, creation: str, retention: str, etcdctl: str,
                  endpoint: str, cacert: str, cert: str, key: str,
                  member: tuple[str, ...]) -> None:
    """Run the etcd member given after `--` and take recurring snapshots of it (each etcd
    node's service when `services.etcd` asks for snapshots; not for direct use)."""
    from corral.config.units import parse_duration
    from corral.install.etcd_snapshot_loop import LoopOptions, run_loop

    try:
        interval_s, retention_s = parse_duration(creation), parse_duration(retention)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if interval_s <= 0:
        raise click.BadParameter("must be more than 0s", param_hint="--creation")
    sys.exit(run_loop(LoopOptions(snapshot_dir, interval_s, retention_s, etcdctl, endpoint,
                                  cacert, cert, key, member)))
