"""Preflight over SSH: `corral up` checks every node before it changes anything, and each
failure names the node and the fix; nothing is installed on any node, no state file written.

Each test runs the real `corral up` on three real SSH hosts, two good and one with the fault:
not reachable, a key it does not accept, a host key that changed or is not known (and
`accept-new`), a python3 too old (the host's PATH finds a python3 that reports 3.9.2, as an old
Debian's would), a port taken, a disk too small (a 64 MB /opt/corral). Not simulated here: a
node's clock off (the hosts share this machine's clock) and a user without rights (it needs a
second account): unit tests cover both verdicts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.up_ssh.harness import cluster_text, installed_nothing, node_entry
from tests.support.net import free_port
from tests.support.procs import corral_argv
from tests.support.ssh_hosts import (
    SshHost,
    address_block,
    make_key,
    public_key,
    ssh_hosts,
    write_known_hosts,
)

OLD_PYTHON = "#!/bin/sh\necho 3.9.2\n"
CLOCK_AHEAD_S = 30
# python3 whose clock runs CLOCK_AHEAD_S ahead (the host's clock itself cannot be set from a
# mount namespace): every python3 the node runs, the preflight's clock reading included
AHEAD_SITECUSTOMIZE = (f"import time\n_real = time.time\n"
                       f"time.time = lambda: _real() + {CLOCK_AHEAD_S}\n")


@dataclass
class Hosts:
    """The module's hosts and keys."""

    good: list[SshHost]
    old_python: SshHost
    small_disk: SshHost
    read_only: SshHost
    clock_ahead: SshHost
    key: Path
    other_key: Path
    bundle_env: dict[str, str]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, bundle_env: dict[str, str],
          user_key: Path) -> Iterator[Hosts]:
    """Three good hosts, one whose python3 is too old, one with a small /opt/corral, one
    whose /etc/corral is mounted read-only, one whose clock is ahead."""
    directory = tmp_path_factory.mktemp("preflight")
    other = make_key(directory / "id_other")
    fake_bin = directory / "old-python-bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text(OLD_PYTHON)
    (fake_bin / "python3").chmod(0o755)
    ahead_site = directory / "clock-ahead-site"
    ahead_site.mkdir()
    (ahead_site / "sitecustomize.py").write_text(AHEAD_SITECUSTOMIZE)
    ahead_bin = directory / "clock-ahead-bin"
    ahead_bin.mkdir()
    (ahead_bin / "python3").write_text(
        f"#!/bin/sh\nPYTHONPATH={ahead_site} exec /usr/bin/python3 \"$@\"\n")
    (ahead_bin / "python3").chmod(0o755)
    with ssh_hosts(directory / "good", 3, [user_key]) as good:
        old, small, read_only, ahead = (
            SshHost(directory / name, address, [user_key], **options)  # type: ignore[arg-type]
            for name, address, options in zip(
                ("old", "small", "read-only", "clock-ahead"), address_block(4),
                ({"path_prefix": fake_bin}, {"sizes": {"/opt/corral": "64m"}},
                 {"read_only": frozenset({"/etc/corral"})}, {"path_prefix": ahead_bin}),
                strict=True))
        try:
            yield Hosts(good, old.start(), small.start(), read_only.start(), ahead.start(),
                        user_key, other, bundle_env)
        finally:
            for host in (old, small, read_only, ahead):
                host.stop()


def run_up(tmp: Path, hosts: Hosts, third: SshHost | tuple[str, int], *, third_extra: str = "",
           known_text: str | None = None, top: str = "", dry_run: bool = False,
           ) -> subprocess.CompletedProcess[str]:
    """`corral up` on node-1, node-2 (good hosts) and node-3 (`third`); known_hosts has every
    host's key unless `known_text` is given."""
    known_hosts = tmp / "known_hosts"
    if known_text is None:
        write_known_hosts(known_hosts, [*hosts.good[:2],
                                        *([third] if isinstance(third, SshHost) else [])])
    else:
        known_hosts.write_text(known_text)
    nodes = [node_entry(h, f"node-{i + 1}") for i, h in enumerate(hosts.good[:2])]
    nodes.append(node_entry(third, "node-3", extra=third_extra))
    config = tmp / "rancher-cluster.yml"
    config.write_text(cluster_text(nodes, hosts.key, known_hosts, free_port(), free_port(), top))
    argv = corral_argv("up", "--config", str(config), *(["--dry-run"] if dry_run else []))
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **hosts.bundle_env})


def lines(*hosts: SshHost) -> str:
    """known_hosts lines of `hosts`."""
    return "".join(h.known_hosts_line + "\n" for h in hosts)


def fingerprint(public: Path) -> str:
    """SHA256:… of a public key file."""
    return subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def fatal_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FATA[")]


def assert_stopped_before_any_change(done: subprocess.CompletedProcess[str], tmp: Path,
                                     hosts: list[SshHost], problems: int = 1) -> str:
    """Exit 1, the preflight summary, no state file, nothing in Corral's directories; the
    FATA lines."""
    assert done.returncode == 1, done.stdout + done.stderr
    fatal = "\n".join(fatal_lines(done.stdout))
    assert f"{problems} preflight problem(s); nothing was changed on any node" in fatal, fatal
    assert "[bundle]" not in done.stdout and "Starting" not in done.stdout
    assert not (tmp / "rancher-cluster.corralstate").exists()
    assert installed_nothing(hosts) == {h.address: "" for h in hosts}
    return fatal


def test_an_unreachable_node_is_named_with_its_address_and_the_fix(
    hosts: Hosts, tmp_path: Path
) -> None:
    """Nothing listens at node-3's address and port: connection refused, check sshd."""
    address, port = address_block(1)[0], free_port()
    done = run_up(tmp_path, hosts, (address, port))
    fatal = assert_stopped_before_any_change(done, tmp_path, hosts.good[:2])
    assert (f"[preflight] node [node-3]: cannot reach node [node-3] at {address}:{port}: "
            "connection refused") in fatal
    assert f"fix: check that sshd runs on the host and listens on port {port}" in fatal
    assert "node [node-1]" not in fatal and "node [node-2]" not in fatal


def test_a_key_the_node_refuses_is_named_with_ssh_copy_id_as_the_fix(
    hosts: Hosts, tmp_path: Path
) -> None:
    """node-3 given a key its authorized_keys lacks: the login is refused, key named."""
    third = hosts.good[2]
    done = run_up(tmp_path, hosts, third, third_extra=f"    ssh_key_path: {hosts.other_key}\n")
    fatal = assert_stopped_before_any_change(done, tmp_path, hosts.good)
    assert (f"node [node-3] at {third.address}:{third.port} refused the login as root (tried "
            f"{hosts.other_key})") in fatal
    assert f"ssh-copy-id -i {hosts.other_key}.pub -p {third.port} root@{third.address}" in fatal


def test_a_changed_host_key_is_refused_with_both_fingerprints(
    hosts: Hosts, tmp_path: Path
) -> None:
    """known_hosts holds another key for node-2 (a reinstalled host, or a man in the
    middle): refused, the key offered and the one known both shown, ssh-keygen -R the fix."""
    stale = make_key(tmp_path / "old_host_key")
    good2 = hosts.good[1]
    known = lines(*hosts.good).replace(public_key(good2.host_key), public_key(stale))
    done = run_up(tmp_path, hosts, hosts.good[2], known_text=known)
    fatal = assert_stopped_before_any_change(done, tmp_path, hosts.good)
    assert (f"node [node-2]: the host key of node [node-2] at [{good2.address}]:{good2.port} "
            f"has CHANGED (it offers {fingerprint(good2.host_key.with_suffix('.pub'))})"
            ) in fatal
    assert fingerprint(stale.with_suffix(".pub")) in fatal
    assert f"ssh-keygen -R '[{good2.address}]:{good2.port}'" in fatal


def test_an_unknown_host_is_refused_and_accept_new_trusts_it_once(
    hosts: Hosts, tmp_path: Path
) -> None:
    """node-3 missing from known_hosts: refused with ssh-keyscan as the fix; with
    `ssh_strict_host_key_checking: accept-new` its key is added and the checks pass."""
    third = hosts.good[2]
    done = run_up(tmp_path, hosts, third, known_text=lines(*hosts.good[:2]))
    fatal = assert_stopped_before_any_change(done, tmp_path, hosts.good)
    assert f"the host key of node [node-3] at [{third.address}]:{third.port} is not in" in fatal
    assert f"ssh-keyscan -p {third.port} {third.address}" in fatal
    trusted = run_up(tmp_path, hosts, third, known_text=lines(*hosts.good[:2]),
                     top="ssh_strict_host_key_checking: accept-new\n", dry_run=True)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert third.known_hosts_line in (tmp_path / "known_hosts").read_text()


def test_a_python_too_old_is_named_with_its_version(hosts: Hosts, tmp_path: Path) -> None:
    """node-3's python3 says 3.9.2: Corral needs 3.11 or newer, install it."""
    done = run_up(tmp_path, hosts, hosts.old_python)
    fatal = assert_stopped_before_any_change(done, tmp_path, [*hosts.good[:2], hosts.old_python])
    assert "[preflight] node [node-3]: python3 is 3.9.2; Corral needs 3.11 or newer" in fatal
    assert "fix: install Python 3.11 or newer as python3 on the node" in fatal


def test_a_port_taken_on_a_node_is_named_with_what_holds_it(
    hosts: Hosts, tmp_path: Path
) -> None:
    """Something (this test) listens on node-2's 2379: the port, the holder's pid, the fix."""
    good2 = hosts.good[1]
    with socket.socket() as blocker:
        blocker.bind((good2.address, 2379))
        blocker.listen()
        done = run_up(tmp_path, hosts, hosts.good[2])
    fatal = assert_stopped_before_any_change(done, tmp_path, hosts.good)
    assert f"[preflight] node [node-2]: port 2379 of {good2.address} (etcd) is taken" in fatal
    assert f"(pid {os.getpid()})" in fatal
    assert f"fix: stop what listens on {good2.address}:2379 on the node" in fatal


def test_a_disk_too_small_for_a_release_is_named_with_the_space(
    hosts: Hosts, tmp_path: Path
) -> None:
    """node-3's /opt/corral has 64 MB: a release needs 400 MB there."""
    done = run_up(tmp_path, hosts, hosts.small_disk)
    fatal = assert_stopped_before_any_change(done, tmp_path, [*hosts.good[:2], hosts.small_disk])
    assert "[preflight] node [node-3]: /opt/corral has 64 MB free; Corral needs 400 MB" in fatal


def test_a_read_only_install_path_is_named_with_the_remount_as_the_fix(
    hosts: Hosts, tmp_path: Path
) -> None:
    """node-3's /etc/corral is mounted read-only: even root may not write it, so the fix is
    the mount, not the login."""
    done = run_up(tmp_path, hosts, hosts.read_only)
    fatal = assert_stopped_before_any_change(done, tmp_path, [*hosts.good[:2], hosts.read_only])
    assert "[preflight] node [node-3]: /etc/corral is on a read-only filesystem" in fatal
    assert "fix: mount it read-write (mount -o remount,rw /etc/corral), or give /etc/corral " \
           "a writable filesystem of its own" in fatal
    assert "log in as root" not in fatal


def test_a_node_whose_clock_is_ahead_is_named_with_time_synchronisation_as_the_fix(
    hosts: Hosts, tmp_path: Path
) -> None:
    """node-3's clock (its python3's) is 30 s ahead of node-1's and node-2's."""
    done = run_up(tmp_path, hosts, hosts.clock_ahead)
    fatal = assert_stopped_before_any_change(done, tmp_path,
                                             [*hosts.good[:2], hosts.clock_ahead])
    found = re.search(r"\[preflight\] node \[node-3\]: its clock is (\d+\.\d)s ahead of the "
                      r"other nodes'", fatal)
    assert found, fatal
    assert abs(float(found.group(1)) - CLOCK_AHEAD_S) < 2
    assert "synchronise the clocks of every node" in fatal
    assert "node [node-1]:" not in fatal and "node [node-2]:" not in fatal


def test_every_failing_node_is_reported_in_the_same_run(hosts: Hosts, tmp_path: Path) -> None:
    """All nodes are checked at once: node-2's refused key and node-3's old python3 come in
    one run, node-1 is not named."""
    known = write_known_hosts(tmp_path / "known_hosts", [*hosts.good[:2], hosts.old_python])
    nodes = [node_entry(hosts.good[0], "node-1"),
             node_entry(hosts.good[1], "node-2", extra=f"    ssh_key_path: {hosts.other_key}\n"),
             node_entry(hosts.old_python, "node-3")]
    config = tmp_path / "rancher-cluster.yml"
    config.write_text(cluster_text(nodes, hosts.key, known, free_port(), free_port()))
    done = subprocess.run(corral_argv("up", "--config", str(config)), capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, **hosts.bundle_env})
    fatal = assert_stopped_before_any_change(
        done, tmp_path, [*hosts.good[:2], hosts.old_python], problems=2)
    assert "[preflight] node [node-2]: node [node-2] at" in fatal
    assert "[preflight] node [node-3]: python3 is 3.9.2" in fatal
    assert "node [node-1]" not in fatal
