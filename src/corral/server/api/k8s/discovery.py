"""The Kubernetes discovery documents of Corral's read-only slice: `/version`, `/api`, `/apis`,
`/api/v1`. A client (kubectl) reads them before anything else and learns that the core group
`v1` has one resource, `nodes` (cluster-scoped, `get` and `list`, short name `no`).
"""

from __future__ import annotations

import platform
from typing import Any

from corral import __version__

KUBERNETES_VERSION = (1, 20, 0)  # the API these documents describe (kubectl 1.20's, Debian's)
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def git_version(corral_version: str = __version__) -> str:
    """`v1.20.0-corral+v0.1.0`: the Kubernetes version served, tagged with Corral's."""
    major, minor, patch = KUBERNETES_VERSION
    return f"v{major}.{minor}.{patch}-corral+v{corral_version}"


def version_info(corral_version: str = __version__) -> dict[str, str]:
    """The body of `GET /version` (what `kubectl version` prints as the server version)."""
    major, minor, _ = KUBERNETES_VERSION
    machine = platform.machine()
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": git_version(corral_version),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{platform.system().lower()}/{_ARCHITECTURES.get(machine, machine)}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """`GET /api`: the core group's versions and the address clients reach the server by."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    """`GET /apis`: no named groups (only the core group's `nodes` is served)."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}


def core_v1_resources() -> dict[str, Any]:
    """`GET /api/v1`: the resources of the core group, version v1."""
    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": False,
                "kind": "Node",
                "verbs": ["get", "list"],
                "shortNames": ["no"],
            }
        ],
    }
