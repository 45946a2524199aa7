"""`corral lb`: the Layer-7 load balancer."""

from __future__ import annotations

import click


@click.command()
def lb() -> None:
    """The Layer-7 load balancer (not built yet)."""
