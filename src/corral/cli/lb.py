"""`corral lb`: the Layer-7 load balancer (and `corral lb reload`)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from corral.config.errors import ConfigError
from corral.config.lb import LbConfig

CONFIG_HELP = (
    "The YAML configuration (see docs/lb.md; examples/lb.yml is Rancher's example NGINX"
    " configuration in this form)."
)

EPILOG = """\b
Examples:
  corral lb --check --config lb.yml     # validate, print every problem with file:line
  corral lb --config lb.yml             # run in the foreground
  corral lb reload --config lb.yml      # check lb.yml, then make the running lb load it
  corral lb nginx-config --config lb.yml > nginx.conf   # the same as an NGINX configuration
  corral lb --check --config examples/lb.yml
"""

RELOAD_EPILOG = """\b
Examples:
  corral lb reload --config lb.yml              # pid from the config's pid_file
  corral lb reload --config lb.yml --pid 4242   # the master's pid given
"""


def _load(config_path: Path, loader: Callable[[Path], LbConfig] | None = None) -> LbConfig:
    from corral.config.lb_load import load_lb_config

    try:
        return (loader or load_lb_config)(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"corral lb: {config_path}: {len(exc.problems)} problem(s)", err=True)
        sys.exit(1)


@click.group(
    invoke_without_command=True,
    short_help="The Layer-7 load balancer (TLS, WebSocket, health checks, workers).",
    epilog=EPILOG,
    context_settings={"max_content_width": 100},
)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP
)
@click.option("--check", is_flag=True, help="Validate the configuration and exit (0 = usable).")
@click.pass_context
def lb(ctx: click.Context, config_path: Path | None, check: bool) -> None:
    """The Layer-7 load balancer: TLS termination, HTTP/1.1, WebSocket and any Upgrade,
    X-Forwarded-* headers, 80 → 301 to HTTPS, unbuffered streaming, upstream pools with active
    /healthz checks and retries, worker processes, reload without dropping connections.

    \b
    Signals to the master: SIGHUP reloads (an invalid file changes nothing), SIGTERM or
    SIGINT stop gracefully (requests in flight finish within shutdown_timeout).
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("--config is required (e.g. corral lb --config lb.yml)")
    config = _load(config_path)
    if check:
        click.echo(f"corral lb: {config_path}: configuration ok")
        return
    from corral.proxy.master import run

    sys.exit(run(config, config_path))


@lb.command(
    short_help="Check the configuration, then make the running lb load it.", epilog=RELOAD_EPILOG
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=CONFIG_HELP,
)
@click.option(
    "--pid", type=int, help="The master's pid (default: read from the config's pid_file)."
)
def reload(config_path: Path, pid: int | None) -> None:
    """Check the configuration, then tell the running lb (SIGHUP) to load it.

    New connections go to new workers at once; the old workers finish their requests and keep
    their open WebSockets until those close or drain_timeout passes. If the file has problems,
    they are printed and the running lb is not touched.
    """
    config = _load(config_path)
    if pid is None:
        if not config.pid_file:
            raise click.UsageError(
                f"{config_path} has no pid_file: add `pid_file: /run/corral-lb.pid` (then restart"
                " the lb once), or pass --pid"
            )
        try:
            pid = int(Path(config.pid_file).read_text().strip())
        except (OSError, ValueError) as exc:
            raise click.ClickException(
                f"cannot read the master's pid from {config.pid_file}: {exc} (is the lb running?)"
            ) from exc
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise click.ClickException(f"no process {pid}: is the lb running?") from exc
    click.echo(f"corral lb: configuration ok; reload signalled to pid {pid}")


NGINX_CONFIG_EPILOG = """\b
Examples:
  corral lb nginx-config --config lb.yml > /etc/nginx/nginx.conf && nginx -t
  corral lb nginx-config --config examples/lb.yml    # Rancher's example, filled in
"""


@lb.command(
    "nginx-config",
    short_help="Print the equivalent NGINX configuration.",
    epilog=NGINX_CONFIG_EPILOG,
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=CONFIG_HELP,
)
def nginx_config(config_path: Path) -> None:
    """Print the NGINX configuration that does what the lb configuration does: Rancher's
    example NGINX configuration filled in with its upstreams, names, certificates, listeners
    and timeouts, plus upstream keepalive and the Connection map that keeps upstream
    connections open; what NGINX open source cannot do (active health checks) is a comment.
    The file's schema and references are checked; certificate files are not opened (nginx -t
    checks them where NGINX runs). See docs/doctor.md.
    """
    from corral.config.nginx_render import default_title, load_for_nginx, render_nginx

    config = _load(config_path, load_for_nginx)
    click.echo(render_nginx(config, title=default_title(config_path.name)), nl=False)
