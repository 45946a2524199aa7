"""`corral doctor URL`: check a live install against Rancher's load-balancer requirements."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from corral.config.units import parse_duration
from corral.doctor.model import (
    DEFAULT_HTTP_PORT,
    DEFAULT_IDLE_S,
    DEFAULT_TIMEOUT_S,
    Status,
    Target,
    TargetError,
    parse_node,
    parse_url,
)
from corral.doctor.report import MARKS

USAGE_EXIT = 64  # bad arguments: above any number of failed checks
TOKEN_ENV = "CORRAL_DOCTOR_TOKEN"
_CHECKSUM = re.compile(r"[0-9a-fA-F]{64}")

EPILOG = f"""\b
Exit status: the number of failed checks (0 = all passed; warnings and checks not run do not
count); {USAGE_EXIT} for bad arguments.

\b
Examples:
  corral doctor https://rancher.example.com
  corral doctor https://rancher.example.com --nodes http://10.0.0.11,http://10.0.0.12
  corral doctor https://rancher.example.com --idle 14m   # the 15-minute shell window
  corral doctor https://localhost:8443 --http-port 8080 --idle 3s --json
  {TOKEN_ENV}=token-xxxxx:secret corral doctor https://rancher.example.com
"""


HELP = f"""Check a live install at URL (https://FQDN) against what Rancher's guides ask of the
load balancer: DNS; TLS versions, chain, names, expiry and cacerts; HTTP/2 and HTTP/1.1; port 80
→ 301 to the FQDN; no redirect loop; the forwarded headers the server received; WebSocket over
HTTP/1.1 and HTTP/2, open through --idle; no buffering; with --nodes each node's /healthz and the
spreading; with --token an API request and the shell.

Prints one line per check ({MARKS[Status.PASS]} passed, {MARKS[Status.FAIL]} failed,
{MARKS[Status.WARN]} warning, {MARKS[Status.SKIP]} not run) with what it saw, and under each
failure one `fix:` line naming the NGINX directive and the corral lb key. Nothing it sends changes
state; it needs no credentials. See docs/doctor.md.
"""


class _DoctorCommand(click.Command):
    """Usage errors exit USAGE_EXIT, so the exit status never confuses them with failures."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = USAGE_EXIT
            raise


def _usage(message: str) -> click.UsageError:
    error = click.UsageError(message)
    error.exit_code = USAGE_EXIT
    return error


def _duration(flag: str, value: str, minimum: float) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _usage(f"{flag}: {exc}") from None
    if seconds < minimum:
        raise _usage(f"{flag} {value}: at least {minimum:g} s")
    return seconds


def build_target(url: str, *, ca: Path | None, nodes: tuple[str, ...], idle: str,
                 http_port: int, token: str | None, ca_checksum: str | None,
                 no_cacerts: bool, timeout: str) -> Target:
    """The Target from the command line; a usage error naming the flag otherwise."""
    try:
        fqdn, port = parse_url(url)
        node_urls = tuple(parse_node(item) for value in nodes for item in value.split(",")
                          if item.strip())
    except TargetError as exc:
        raise _usage(str(exc)) from None
    if ca_checksum is not None and not _CHECKSUM.fullmatch(ca_checksum.strip()):
        raise _usage(f"--ca-checksum {ca_checksum!r}: 64 hex digits (the sha256 an agent "
                     "is given)")
    if not 0 <= http_port < 65536:
        raise _usage(f"--http-port {http_port}: a port 1-65535, or 0 to skip the check")
    return Target(
        fqdn=fqdn, port=port, http_port=http_port or None, ca_file=ca, nodes=node_urls,
        idle_s=_duration("--idle", idle, 0.0), token=token or None, ca_checksum=ca_checksum,
        no_cacerts=no_cacerts, timeout_s=_duration("--timeout", timeout, 0.1),
    )


@click.command(
    cls=_DoctorCommand,
    help=HELP,
    short_help="Check a live install against Rancher's load-balancer requirements.",
    epilog=EPILOG,
    context_settings={"max_content_width": 100},
)
@click.argument("url")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CA (PEM) the chain should verify against when no cacerts is published, "
                   "or to check a private chain is complete.")
@click.option("--nodes", multiple=True, metavar="URL[,URL…]",
              help="The nodes behind the load balancer (http://10.0.0.11,…): each /healthz "
                   "must answer 200, and requests must reach every one.")
@click.option("--idle", default=f"{DEFAULT_IDLE_S:g}s", show_default=True, metavar="DURATION",
              help="How long a WebSocket must stay open with no traffic (NGINX closes it after "
                   "60 s unless proxy_read_timeout is longer).")
@click.option("--http-port", type=int, default=DEFAULT_HTTP_PORT, show_default=True,
              metavar="PORT",
              help="The load balancer's plain-HTTP port that must redirect to HTTPS (0: skip).")
@click.option("--token", envvar=TOKEN_ENV, metavar="TOKEN",
              help=f"An admin's API token (token-xxxxx:secret; better in ${TOKEN_ENV}): adds "
                   "the authenticated checks. Sent only over a chain that verifies.")
@click.option("--ca-checksum", metavar="SHA256",
              help="The --ca-checksum agents were given: the published cacerts must match it.")
@click.option("--no-cacerts", is_flag=True,
              help="The install uses a recognised CA (corral server --no-cacerts): nothing may "
                   "be published and the chain must verify against the system trust store.")
@click.option("--timeout", default=f"{DEFAULT_TIMEOUT_S:g}s", show_default=True,
              metavar="DURATION",
              help="How long to wait for each connection and answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(url: str, ca: Path | None, nodes: tuple[str, ...], idle: str, http_port: int,
           token: str | None, ca_checksum: str | None, no_cacerts: bool, timeout: str,
           as_json: bool) -> None:
    """Check a live install at URL (see HELP)."""
    from corral.doctor import run
    from corral.doctor.report import render_json, render_text

    target = build_target(url, ca=ca, nodes=nodes, idle=idle, http_port=http_port, token=token,
                          ca_checksum=ca_checksum, no_cacerts=no_cacerts, timeout=timeout)
    report = run(target)
    click.echo(render_json(report) if as_json else render_text(report), nl=False)
    sys.exit(report.failed)
