"""The `corral` command's top level: version, the verb listing, every verb's help."""

import subprocess

import click
import pytest
from click.testing import CliRunner

from corral.cli.main import VERBS, cli
from tests.support.procs import corral_argv


def test_version_prints_corral_version() -> None:
    """`corral --version` prints `corral version vX.Y.Z`."""
    out = subprocess.run(corral_argv("--version"), capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("corral version v0.")


def _help(*args: str) -> str:
    """The help text of `corral ARGS --help`, at a fixed width of 80 columns."""
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="corral", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def _commands_section(text: str) -> dict[str, str]:
    """The rows of a help text's `Commands:` section, as name → help; a wrapped row fails."""
    section = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.strip().split(None, 1) for line in section.splitlines()]
    assert all(len(row) == 2 for row in rows), f"a help line wraps:\n{section}"
    return {name: line for name, line in rows}


def _visible_verbs() -> list[str]:
    """The registered verbs a user sees (hidden ones, started by other verbs, left out)."""
    commands = {verb: cli.get_command(click.Context(cli), verb) for verb in VERBS}
    return sorted(verb for verb, command in commands.items() if command and not command.hidden)


def _every_command() -> list[tuple[str, ...]]:
    """Every visible verb and every visible subcommand of a verb, as argument tuples."""
    found: list[tuple[str, ...]] = []
    for verb in _visible_verbs():
        command = cli.get_command(click.Context(cli), verb)
        assert command is not None, verb
        found.append((verb,))
        if isinstance(command, click.Group):
            context = click.Context(command)
            subcommands = [(sub, command.get_command(context, sub)) for sub in
                           command.list_commands(context)]
            found.extend((verb, sub) for sub, cmd in subcommands if cmd and not cmd.hidden)
    return found


def test_help_lists_every_registered_verb_with_one_untruncated_line() -> None:
    """`corral --help` lists exactly the verbs users see, each with its help on one line."""
    rows = _commands_section(_help())
    assert sorted(rows) == _visible_verbs()
    for verb, line in rows.items():
        command = cli.get_command(click.Context(cli), verb)
        assert command is not None
        assert line == command.get_short_help_str(limit=1000), verb
        assert not line.endswith("..."), verb


def test_a_newly_registered_verb_appears_in_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A verb added to VERBS shows up in `corral --help` with its docstring's first sentence."""
    monkeypatch.setitem(VERBS, "hello", "tests.unit.test_cli:hello_verb")
    assert _commands_section(_help())["hello"] == "Say hello (a verb only this test registers)."


@pytest.mark.parametrize("args", _every_command(), ids=" ".join)
def test_every_verb_help_ends_with_examples(args: tuple[str, ...]) -> None:
    """The last section of every verb's (and subcommand's) --help is `Examples:` with commands."""
    last = _help(*args).rstrip().split("\n\n")[-1].splitlines()
    assert last[0].strip() == "Examples:"
    assert len(last) > 1
    assert last[1].strip().startswith(("corral ", "AUDIT_")), last[1]


@click.command()
def hello_verb() -> None:
    """Say hello (a verb only this test registers).

    It has a second paragraph that the listing leaves out.
    """
