"""Entry point of the `corral` command; each verb lives in its own module.

A verb is registered by one line in VERBS. `corral --help` lists the registered verbs with click's
own listing: each verb's one-line help is its command's `short_help` (or the first sentence of its
docstring), so a new verb appears there by itself.
"""

from __future__ import annotations

import importlib

import click

from corral import __version__

# verb name → "module:attribute" of its click command; imported only when that verb runs (or
# when `corral --help` lists the verbs)
VERBS: dict[str, str] = {
    "lb": "corral.cli.lb:lb",
    "server": "corral.cli.server:server",
    "ingress": "corral.cli.ingress:ingress",
    "up": "corral.cli.up:up",
    "remove": "corral.cli.remove:remove",
    "cert": "corral.cli.cert:cert",
    "doctor": "corral.cli.doctor:doctor",
    "etcd": "corral.cli.etcd:etcd",
    "supervise": "corral.cli.up:supervise",  # hidden: one node's services, started by `up`
}


class LazyVerbs(click.Group):
    """A group that imports a verb's module only when the verb is used (or listed by --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The registered verbs, sorted."""
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The click command of a registered verb, imported now; None for an unknown verb."""
        target = VERBS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


EPILOG = """\b
Examples:
  corral lb --config lb.yml                   # the load balancer (see corral lb --help)
  corral server                               # the management server (see corral server --help)
  corral up --config rancher-cluster.yml      # Rancher's HA install (see corral up --help)
  corral doctor https://rancher.example.com   # check a live install's load balancer
  corral VERB --help                          # every verb's options, ending with its examples
  corral --version
"""


@click.group(
    cls=LazyVerbs,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", message="corral version v%(version)s")
def cli() -> None:
    """Corral: a TLS-secured management server behind a Layer-7 load balancer, the system of
    Rancher's single-node guide (Docker install behind an NGINX Layer-7 load balancer) and
    Rancher's HA guide (RKE, external Layer-7 load balancer)."""


def main() -> None:
    """Run the `corral` command."""
    cli(prog_name="corral")


if __name__ == "__main__":
    main()
