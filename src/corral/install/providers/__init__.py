"""Where a node's services run: `local` (every node on this machine) or `ssh` (RKE's way)."""

from __future__ import annotations

from pathlib import Path

from corral.install.desired import DesiredCluster
from corral.install.providers.base import NodePaths, Provider, ProviderError

__all__ = ["NodePaths", "Provider", "ProviderError", "provider_for"]


def provider_for(desired: DesiredCluster, base_dir: Path) -> Provider:
    """The provider the cluster file names, with its node directories under `base_dir`."""
    if desired.provider == "local":
        from corral.install.providers.local import LocalProvider

        return LocalProvider(base_dir)
    if desired.provider == "ssh":
        from corral.install.providers.ssh import SshProvider

        return SshProvider(desired, base_dir)
    raise ProviderError(
        f"{desired.source}: provider {desired.provider!r} is not known: use `provider: ssh` "
        "(RKE's, the default) or `provider: local` (every node on this machine)"
    )
