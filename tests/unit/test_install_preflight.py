"""Preflight verdicts (pure): from a node's facts to problems that name the node and the fix;
the clock skew between nodes; the ports each role listens on."""

from __future__ import annotations

from typing import Any

import pytest

from corral.install.desired import NodeSpec
from corral.install.preflight import (
    INSTALL_DIRS,
    MAX_CLOCK_SKEW_S,
    clock_errors,
    clock_offsets,
    clock_problems,
    fact_problems,
    node_ports,
    parse_python,
    python_problem,
)
from tests.support.install_cluster import node

NODE = node(1, prefix="10.0.0")


def facts(**changes: Any) -> dict[str, Any]:
    """The facts of a healthy node (root, python 3.11.2, every port free, plenty of disk)."""
    base: dict[str, Any] = {
        "time": 1000.0, "uid": 0, "user": "root", "python": [3, 11, 2], "venv": True,
        "systemd": False, "installed": False,
        "paths": {p: {"ok": True, "at": p, "exists": True} for p in INSTALL_DIRS},
        "disk": dict.fromkeys(INSTALL_DIRS, 10_000),
        "ports": {f"{a}:{p}": None for a, p, _ in node_ports(NODE)},
    }
    base.update(changes)
    return base


def lines(problems: list[Any]) -> list[str]:
    return [p.line() for p in problems]


def test_a_healthy_node_has_no_problem() -> None:
    """Root, python 3.11, free ports, disk: nothing to report."""
    assert fact_problems(NODE, facts(), "3.11", "") == []


def test_each_role_adds_its_ports() -> None:
    """etcd 2379/2380, server 8080/8443 on the internal address, ingress 80."""
    etcd_only = node(2, prefix="10.0.0", roles=("etcd",))
    assert node_ports(etcd_only) == [("10.0.0.2", 2379, "etcd"), ("10.0.0.2", 2380, "etcd")]
    assert [p for _, p, _ in node_ports(NODE)] == [2379, 2380, 8080, 8443, 80]


def test_the_ingress_port_is_checked_on_every_address_when_the_node_has_two() -> None:
    """address ≠ internal_address: the ingress binds 0.0.0.0:80, so that is what is checked."""
    split = NodeSpec("n", "203.0.113.5", "10.0.0.5", frozenset({"worker"}))
    assert node_ports(split) == [("0.0.0.0", 80, "corral ingress")]


@pytest.mark.parametrize(("output", "status", "expected"), [
    ("sh: 1: python3: not found\n", 127, "python3 is not installed"),
    ("3.9.2\n", 0, "python3 is 3.9.2; Corral needs 3.11 or newer"),
    ("Segmentation fault\n", 139, "python3 does not run: Segmentation fault"),
])
def test_python_missing_old_or_broken_is_named(output: str, status: int, expected: str) -> None:
    """What `python3 -c …` printed becomes the problem, with the install as the fix."""
    problem = python_problem("node-2", output, status)
    assert problem is not None and problem.node == "node-2"
    assert expected in problem.message
    assert "install Python 3.11 or newer" in problem.fix


def test_python_3_11_and_newer_pass() -> None:
    """3.11.0 and 3.13.1 are fine; versions parse as numbers (3.9 < 3.11)."""
    assert python_problem("n", "3.11.0\n", 0) is None
    assert python_problem("n", "3.13.1\n", 0) is None
    assert parse_python("3.9.18") == (3, 9, 18)


def test_a_python_other_than_the_bundles_is_refused_unless_a_registry_is_used() -> None:
    """Wheels built for 3.11 do not install on 3.12; with private_registries they need not."""
    other = facts(python=[3, 12, 1])
    assert "python3 is 3.12, but the bundle's wheels are for 3.11" in " ".join(
        lines(fact_problems(NODE, other, "3.11", "")))
    assert fact_problems(NODE, other, "3.11", "https://pypi.example.test/simple/") == []


def test_unwritable_install_paths_name_the_user_and_the_fix() -> None:
    """A user who may not create /opt/corral: log in as root, or give the directories."""
    paths = facts()["paths"] | {"/opt/corral": {"ok": False, "at": "/opt", "exists": False}}
    [problem] = fact_problems(NODE, facts(uid=1000, user="ubuntu", paths=paths), "3.11", "")
    assert problem.message == "user ubuntu may not write /opt/corral (in /opt)"
    assert "sudo install -d -o ubuntu /opt/corral /etc/corral" in problem.fix


def test_a_read_only_install_path_names_the_mount_not_the_login() -> None:
    """root may not write a read-only filesystem: the fix is the mount."""
    paths = facts()["paths"] | {"/etc/corral": {"ok": False, "at": "/etc/corral",
                                                "exists": True, "read_only": True}}
    [problem] = fact_problems(NODE, facts(paths=paths), "3.11", "")
    assert problem.message == "/etc/corral is on a read-only filesystem"
    assert problem.fix == ("mount it read-write (mount -o remount,rw /etc/corral), or give "
                           "/etc/corral a writable filesystem of its own")


def test_a_systemd_node_needs_root_to_manage_units() -> None:
    """systemd runs the node and the user is not root: Corral cannot install its unit."""
    [problem] = fact_problems(NODE, facts(systemd=True, uid=1000, user="ubuntu"), "3.11", "")
    assert "may not manage its units" in problem.message and "user: root" in problem.fix


def test_a_taken_port_names_the_holder_and_ours_are_not_problems() -> None:
    """2379 held by another process: named with its pid; 80 held by this node's own
    ingress (a re-run): fine."""
    ports = facts()["ports"] | {
        "10.0.0.1:2379": {"error": "in use", "pid": 4242, "name": "etcd", "ours": False},
        "10.0.0.1:80": {"error": "in use", "pid": 77, "name": "python3", "ours": True},
    }
    [problem] = fact_problems(NODE, facts(ports=ports), "3.11", "")
    assert problem.line() == (
        "node [node-1]: port 2379 of 10.0.0.1 (etcd) is taken by etcd (pid 4242) — fix: stop "
        "what listens on 10.0.0.1:2379 on the node, or give the etcd role to another node")


def test_a_port_below_1024_denied_and_an_address_the_node_lacks_are_named() -> None:
    """EACCES on 80 (not root) and EADDRNOTAVAIL on 8080 (internal_address not on the node)."""
    ports = facts()["ports"] | {
        "10.0.0.1:80": {"error": "denied"},
        "10.0.0.1:8080": {"error": "no such address"},
    }
    found = lines(fact_problems(NODE, facts(ports=ports, user="ubuntu"), "3.11", ""))
    assert any("user ubuntu may not listen on port 80" in f for f in found)
    assert any("10.0.0.1 is not an address of the node" in f and "internal_address" in f
               for f in found)


def test_too_little_disk_is_named_and_an_installed_release_needs_none() -> None:
    """64 MB in /opt/corral: too little for a release; with the release installed already,
    no space is needed there."""
    small = facts(disk=facts()["disk"] | {"/opt/corral": 64})
    [problem] = fact_problems(NODE, small, "3.11", "")
    assert problem.message == "/opt/corral has 64 MB free; Corral needs 400 MB there"
    assert fact_problems(NODE, small | {"installed": True}, "3.11", "") == []


def test_a_failed_check_script_is_one_problem() -> None:
    """The node's script raised: its error is reported, nothing else is judged."""
    [problem] = fact_problems(NODE, {"error": "PermissionError: /proc"}, "3.11", "")
    assert "PermissionError: /proc" in problem.message


def test_clock_offsets_take_the_middle_of_the_round_trip() -> None:
    """Sent at 100, node says 105, back at 102: the node is 4 s ahead."""
    assert clock_offsets({"n": (100.0, 105.0, 102.0)}) == {"n": 4.0}


def test_a_node_whose_clock_is_off_is_named_and_the_others_are_not() -> None:
    """node-3 is 29.8 s behind the median of the three: it alone is named, with the fix."""
    [problem] = clock_problems({"node-1": 0.1, "node-2": -0.2, "node-3": -30.0})
    assert problem.node == "node-3"
    assert problem.message.startswith("its clock is 29.8s behind the other nodes'")
    assert "chrony" in problem.fix


def test_clocks_within_the_limit_and_a_single_node_pass() -> None:
    """Skew under MAX_CLOCK_SKEW_S passes; one node has nothing to compare with."""
    assert clock_problems({"a": 0.0, "b": MAX_CLOCK_SKEW_S * 0.9, "c": 0.1}) == []
    assert clock_problems({"a": 500.0}) == []


def test_a_slow_round_trip_is_not_taken_for_a_clock_off() -> None:
    """2.9 s off read over a 2 s round trip (±1 s): not proven beyond 2 s; the same offset
    over a 0.1 s round trip is."""
    slow = {"a": (100.0, 101.0, 102.0), "b": (100.0, 101.0, 102.0), "c": (100.0, 103.9, 102.0)}
    offsets = clock_offsets(slow)
    assert clock_problems(offsets, errors=clock_errors(slow)) == []
    quick = {"a": (100.0, 100.05, 100.1), "b": (100.0, 100.05, 100.1),
             "c": (100.0, 102.95, 100.1)}
    [problem] = clock_problems(clock_offsets(quick), errors=clock_errors(quick))
    assert problem.node == "c"
