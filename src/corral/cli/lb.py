"""`corral lb`: the Layer-7 load balancer."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.config.errors import ConfigError


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The YAML configuration (see docs/lb.md; examples/lb.yml mirrors the seeds' NGINX).",
)
@click.option("--check", is_flag=True, help="Validate the configuration and exit (0 = usable).")
def lb(config_path: Path, check: bool) -> None:
    """The Layer-7 load balancer: TLS termination, HTTP/1.1, WebSocket and any Upgrade,
    X-Forwarded-* headers, 80 → 301 to HTTPS, unbuffered streaming, upstream pools with active
    /healthz checks and retries.

    \b
    Examples:
      corral lb --check --config lb.yml     validate, print every problem with file:line
      corral lb --config lb.yml             run in the foreground (SIGTERM stops gracefully)
    """
    from corral.config.lb_load import load_lb_config

    try:
        config = load_lb_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(
            f"corral lb: {config_path}: {len(exc.problems)} problem(s); nothing was started",
            err=True,
        )
        sys.exit(1)
    if check:
        click.echo(f"corral lb: {config_path}: configuration ok")
        return
    from corral.proxy.runner import run

    sys.exit(run(config))
