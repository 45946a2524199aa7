"""`corral server`: the management server."""

from __future__ import annotations

import click


@click.group()
def server() -> None:
    """The management server (not built yet)."""
