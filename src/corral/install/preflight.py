"""Preflight: what must hold on every node before `corral up` changes anything there, and the
fix for each thing that does not. Pure: the facts come from the node (`node_ops facts`, read
over SSH), the verdicts are made here.

    python3      present, 3.11 or newer, with venv; the same minor version as the bundle's
                 wheels (they are built from this machine's environment)
    rights       the user may write /opt/corral, /etc/corral, /var/lib/corral, /var/log/corral
                 (or create them), and manage services: root where systemd runs the node
    ports        free on the node's address: 2379, 2380 (etcd), 8080, 8443 (server), 80
                 (ingress), unless Corral's own services of this node hold them
    disk         room for a release in /opt/corral, for etcd's data in /var/lib/corral,
                 for the logs in /var/log/corral and the certificates in /etc/corral
    clock        the nodes' clocks within MAX_CLOCK_SKEW_S of each other (etcd and the
                 heartbeats compare times between nodes)
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from corral.install.bundle import PREFIX
from corral.install.desired import NodeSpec
from corral.install.ingress_file import INGRESS_PORT, ingress_listen
from corral.install.providers.base import NodeProblem
from corral.install.services import (
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    SERVER_HTTP_PORT,
    SERVER_HTTPS_PORT,
)

MIN_PYTHON = (3, 11)
MAX_CLOCK_SKEW_S = 2.0
CONFIG_DIR, DATA_DIR, LOG_DIR = "/etc/corral", "/var/lib/corral", "/var/log/corral"
INSTALL_DIRS = (PREFIX, CONFIG_DIR, DATA_DIR, LOG_DIR)
SPACE_MB = {PREFIX: 400, DATA_DIR: 500, LOG_DIR: 100,  # a release (~210 MB installing)
            CONFIG_DIR: 1}  # certificates and configuration: a few KB, rewritten atomically
PYTHON_FIX = ("install Python 3.11 or newer as python3 on the node (Debian 12: apt-get install "
              "python3 python3-venv), or name a package index for your own build in "
              "`private_registries`")


def node_ports(node: NodeSpec) -> list[tuple[str, int, str]]:
    """(address, port, service) of everything the node's services will listen on."""
    ports: list[tuple[str, int, str]] = []
    if node.has("etcd"):
        ports += [(node.internal_address, ETCD_CLIENT_PORT, "etcd"),
                  (node.internal_address, ETCD_PEER_PORT, "etcd")]
    if node.has("controlplane"):
        ports += [(node.internal_address, SERVER_HTTP_PORT, "corral server"),
                  (node.internal_address, SERVER_HTTPS_PORT, "corral server")]
    if node.has("worker"):
        host = ingress_listen(node).rpartition(":")[0].strip("[]")
        ports.append((host, INGRESS_PORT, "corral ingress"))
    return ports


def parse_python(output: str) -> tuple[int, ...] | None:
    """`3.11.2` → (3, 11, 2); None when it is not a version."""
    try:
        return tuple(int(part) for part in output.strip().split("."))
    except ValueError:
        return None


def python_problem(node: str, found: str, exit_status: int | None) -> NodeProblem | None:
    """python3 missing or older than MIN_PYTHON (`found`: what `python3 -c` printed)."""
    wanted = ".".join(map(str, MIN_PYTHON))
    if exit_status == 127 or "not found" in found:
        return NodeProblem(node, "python3 is not installed (Corral runs on the node's python3)",
                           PYTHON_FIX)
    version = parse_python(found)
    if version is None:
        return NodeProblem(node, f"python3 does not run: {found.strip()[:200]}", PYTHON_FIX)
    if version[:2] < MIN_PYTHON:
        shown = ".".join(map(str, version))
        return NodeProblem(node, f"python3 is {shown}; Corral needs {wanted} or newer",
                           PYTHON_FIX)
    return None


def _rights(node: NodeSpec, facts: Mapping[str, Any]) -> list[NodeProblem]:
    problems = []
    user = facts.get("user", node.user)
    for path, state in dict(facts.get("paths") or {}).items():
        if not state.get("ok"):
            where = path if state.get("exists") else f"{path} (in {state.get('at')})"
            if state.get("read_only"):
                problems.append(NodeProblem(
                    node.name, f"{where} is on a read-only filesystem",
                    f"mount it read-write (mount -o remount,rw {state.get('at')}), or give "
                    f"{path} a writable filesystem of its own"))
                continue
            problems.append(NodeProblem(
                node.name, f"user {user} may not write {where}",
                "log in as root (`user: root`), or create the directories for that user "
                f"(sudo install -d -o {user} {' '.join(INSTALL_DIRS)})"))
    if facts.get("systemd") and facts.get("uid") != 0:
        problems.append(NodeProblem(
            node.name, f"systemd runs the node and user {user} may not manage its units",
            "log in as root (`user: root`): Corral installs its supervisor as a systemd unit"))
    return problems


def _ports(node: NodeSpec, facts: Mapping[str, Any]) -> list[NodeProblem]:
    problems = []
    found = dict(facts.get("ports") or {})
    for address, port, service in node_ports(node):
        state = found.get(f"{address}:{port}")
        if not state or state.get("ours"):
            continue
        error = state.get("error")
        if error == "in use":
            holder = f" by {state['name']} (pid {state['pid']})" if state.get("pid") else ""
            problems.append(NodeProblem(
                node.name, f"port {port} of {address} ({service}) is taken{holder}",
                f"stop what listens on {address}:{port} on the node, or give the {service} "
                "role to another node"))
        elif error == "denied":
            problems.append(NodeProblem(
                node.name, f"user {facts.get('user', node.user)} may not listen on port {port} "
                f"({service})", "log in as root (`user: root`): ports below 1024 need it"))
        elif error == "no such address":
            problems.append(NodeProblem(
                node.name, f"{address} is not an address of the node ({service} listens "
                "there)", "give `internal_address` an address the node has (ip -br addr)"))
        else:
            problems.append(NodeProblem(node.name, f"cannot listen on {address}:{port} "
                                        f"({service}): {error}", "check the node's network"))
    return problems


def _disk(node: NodeSpec, facts: Mapping[str, Any]) -> list[NodeProblem]:
    problems = []
    disk = dict(facts.get("disk") or {})
    for path, need in SPACE_MB.items():
        if path == PREFIX and facts.get("installed"):
            continue  # this release is there already
        free = disk.get(path)
        if free is not None and int(free) < need:
            problems.append(NodeProblem(
                node.name, f"{path} has {free} MB free; Corral needs {need} MB there",
                f"free space on the filesystem of {path} (df -h {path})"))
    return problems


def fact_problems(
    node: NodeSpec, facts: Mapping[str, Any], bundle_python: str, registry: str
) -> list[NodeProblem]:
    """Every problem the facts of `node` show (`bundle_python`: "3.11", the wheels' python)."""
    if "error" in facts:
        return [NodeProblem(node.name, f"the checks failed on the node: {facts['error']}",
                            "run `python3 -c 'import json, socket'` on the node to see why")]
    problems: list[NodeProblem] = []
    python = ".".join(str(p) for p in list(facts.get("python") or [])[:2])
    if not facts.get("venv"):
        problems.append(NodeProblem(node.name, "python3 has no venv module", PYTHON_FIX))
    if not registry and bundle_python and python != bundle_python:
        problems.append(NodeProblem(
            node.name, f"python3 is {python}, but the bundle's wheels are for {bundle_python} "
            "(built from this machine's environment)",
            f"install python{bundle_python} as python3 on the node, run corral up from a "
            f"machine with python {python}, or use `private_registries`"))
    return problems + _rights(node, facts) + _ports(node, facts) + _disk(node, facts)


def clock_offsets(readings: Mapping[str, tuple[float, float, float]]) -> dict[str, float]:
    """node → its clock minus this machine's, from (sent, node time, received) readings: the
    node read its clock somewhere in the round trip, taken as its middle."""
    return {node: told - (sent + got) / 2 for node, (sent, told, got) in readings.items()}


def clock_errors(readings: Mapping[str, tuple[float, float, float]]) -> dict[str, float]:
    """node → how far its offset may be off: half its round trip."""
    return {node: (got - sent) / 2 for node, (sent, _, got) in readings.items()}


def clock_problems(
    offsets: Mapping[str, float], limit_s: float = MAX_CLOCK_SKEW_S,
    errors: Mapping[str, float] | None = None,
) -> list[NodeProblem]:
    """The nodes whose clock is more than `limit_s` away from the others' (the median), by
    more than the reading's own error (a slow round trip proves nothing)."""
    if len(offsets) < 2:
        return []
    middle = statistics.median(offsets.values())
    problems = []
    for node, offset in sorted(offsets.items()):
        if abs(offset - middle) - (errors or {}).get(node, 0.0) > limit_s:
            ahead = "ahead of" if offset > middle else "behind"
            problems.append(NodeProblem(
                node, f"its clock is {abs(offset - middle):.1f}s {ahead} the other nodes' "
                f"(more than {limit_s:g}s: etcd and the heartbeats compare times)",
                "synchronise the clocks of every node (systemd-timesyncd, chrony or ntpd)"))
    return problems


def all_ports(nodes: Sequence[NodeSpec]) -> dict[str, list[tuple[str, int, str]]]:
    """node name → its ports."""
    return {node.name: node_ports(node) for node in nodes}
