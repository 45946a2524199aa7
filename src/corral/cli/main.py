"""Entry point of the `corral` command; each verb lives in its own module."""

from __future__ import annotations

import importlib

import click

from corral import __version__

# verb name → "module:attribute" of its click command; imported only when that verb runs
VERBS: dict[str, tuple[str, str]] = {
    "lb": (
        "corral.cli.lb:lb",
        "The Layer-7 load balancer (TLS, HTTP/1.1, WebSocket, health checks).",
    ),
    "server": ("corral.cli.server:server", "The management server (v3 API, events, shell, audit)."),
}


class LazyVerbs(click.Group):
    """A group that imports a verb's module only when the verb is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = VERBS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, VERBS[name][1]) for name in sorted(VERBS)])


@click.group(cls=LazyVerbs, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="corral version v%(version)s")
def cli() -> None:
    """Corral: a TLS-secured management server behind a Layer-7 load balancer."""


def main() -> None:
    """Run the `corral` command."""
    cli(prog_name="corral")


if __name__ == "__main__":
    main()
