"""`corral ingress`: one node's ingress (Rancher's Ingress `cattle-ingress-http`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.config.errors import ConfigError
from corral.config.ingress import IngressConfig

CONFIG_HELP = "The YAML configuration (see docs/ingress.md)."


def _load(config_path: Path) -> IngressConfig:
    from corral.config.ingress_load import load_ingress_config

    try:
        return load_ingress_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"corral ingress: {config_path}: {len(exc.problems)} problem(s)", err=True)
        sys.exit(1)


EPILOG = """\b
Examples:
  corral ingress --check --config ingress.yml             # validate; problems as file:line
  corral ingress --config ingress.yml                     # run in the foreground
  corral ingress --print-lb-config --config ingress.yml   # the same as a corral lb file
"""


@click.command(
    short_help="One node's ingress: the Ingress host → the healthy servers.",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=CONFIG_HELP,
)
@click.option("--check", is_flag=True, help="Validate the configuration and exit (0 = usable).")
@click.option(
    "--print-lb-config",
    is_flag=True,
    help="Print the equivalent `corral lb` configuration (YAML) and exit.",
)
def ingress(config_path: Path, check: bool, print_lb_config: bool) -> None:
    """The per-node ingress: plain HTTP for the Ingress host, proxied to the healthy servers
    of every node (active /healthz checks), with the Ingress annotations' timeouts
    (proxy-connect-timeout 30s, proxy-read-timeout and proxy-send-timeout 1800s) and never
    a redirect (ssl-redirect "false"). X-Forwarded-Proto/-Port set by the external load
    balancer are kept when the connection comes from one of trusted_proxies; from anyone
    else they are replaced. The same engine as `corral lb`.

    \b
    A minimal ingress.yml (`corral up` writes one per node):
      host: rancher.example.com
      upstreams: ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"]
      trusted_proxies: ["10.0.0.100"]

    \b
    Signals: SIGHUP re-reads the file (new upstreams; an invalid file changes nothing, open
    WebSockets stay), SIGTERM or SIGINT stop gracefully.
    """
    config = _load(config_path)
    from corral.config.ingress import to_lb_config

    lb_config = to_lb_config(config)
    if print_lb_config:
        import yaml

        data = lb_config.model_dump(mode="json", exclude_defaults=True)
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
        return
    if check:
        click.echo(f"corral ingress: {config_path}: configuration ok")
        return
    from corral.config.ingress_load import load_ingress_as_lb
    from corral.proxy.master import run

    sys.exit(run(lb_config, config_path, load=load_ingress_as_lb))
