"""The members of a running etcd cluster, changed the way its operators change them: `etcdctl
member list / add / remove` on this machine, over mutual TLS with the etcd client certificate
(this machine's copy of it for SSH nodes).

A member joins in two steps (etcd's runtime reconfiguration): `member add <name>
--peer-urls=<url>` first, which gives the `--initial-cluster` the new member must start with
(`--initial-cluster-state=existing`), then the new member is started. A member leaves with
`member remove <id>` sent to another member; the removed etcd then stops by itself.

etcd refuses a reconfiguration while the member asked has not been connected to every peer for
the last five seconds ("unhealthy cluster": a member restarted just before, say) or when too few
members are started; both pass on their own, so an add or remove asked then is asked again for up
to RECONFIGURE_RETRY_S.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

ETCDCTL = "/usr/bin/etcdctl"
COMMAND_TIMEOUT_S = 20.0
INITIAL_CLUSTER_KEY = "ETCD_INITIAL_CLUSTER="
RECONFIGURE_RETRY_S = 45.0
RECONFIGURE_RETRY_INTERVAL_S = 1.0
# etcd's ErrUnhealthy and ErrNotEnoughStartedMembers: its strict reconfiguration check
TRANSIENT_REFUSALS = ("unhealthy cluster", "not enough started members")


class MemberError(Exception):
    """etcdctl failed: the message says what it was asked and what it answered."""


def is_transient_refusal(message: str) -> bool:
    """Whether etcd refused a reconfiguration for a reason that passes by itself (pure)."""
    return any(reason in message for reason in TRANSIENT_REFUSALS)


@dataclass(frozen=True, slots=True)
class Member:
    """One member as `member list` shows it (a member added but not yet started has no name)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]

    @property
    def hex_id(self) -> str:
        """The id as etcdctl takes it."""
        return f"{self.id:x}"


@dataclass(frozen=True, slots=True)
class EtcdClient:
    """How to reach the cluster from this machine: client URLs and the client certificate."""

    endpoints: tuple[str, ...]
    cafile: str
    certfile: str
    keyfile: str

    def _run(self, *args: str, endpoints: Sequence[str] | None = None) -> str:
        binary = shutil.which("etcdctl") or ETCDCTL
        argv = [
            binary, f"--endpoints={','.join(endpoints or self.endpoints)}",
            f"--cacert={self.cafile}", f"--cert={self.certfile}", f"--key={self.keyfile}",
            "--dial-timeout=5s", "--command-timeout=15s", *args,
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False,
                                  env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MemberError(f"etcdctl {' '.join(args)}: {exc}") from None
        if done.returncode != 0:
            answer = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no answer"]
            raise MemberError(f"etcdctl {' '.join(args)}: {answer[0]}")
        return done.stdout

    def _reconfigure(self, *args: str, endpoints: Sequence[str] | None = None) -> str:
        """`member add/remove`, asked again while etcd's refusal is one that passes."""
        deadline = time.monotonic() + RECONFIGURE_RETRY_S
        while True:
            try:
                return self._run(*args, endpoints=endpoints)
            except MemberError as exc:
                if not is_transient_refusal(str(exc)):
                    raise
                if time.monotonic() > deadline:
                    raise MemberError(
                        f"{exc} (still refused after {RECONFIGURE_RETRY_S:.0f} s)") from None
            time.sleep(RECONFIGURE_RETRY_INTERVAL_S)

    def members(self) -> list[Member]:
        """`member list`."""
        data = json.loads(self._run("member", "list", "-w", "json") or "{}")
        return [
            Member(int(m["ID"]), str(m.get("name", "")), tuple(m.get("peerURLs") or ()),
                   tuple(m.get("clientURLs") or ()))
            for m in data.get("members") or ()
        ]

    def add(self, name: str, peer_url: str) -> str:
        """`member add`: returns the `--initial-cluster` the new member starts with. A member
        already added with this peer URL (a run that stopped before starting it) is not added
        twice: the initial cluster is worked out from the list."""
        current = self.members()
        if not any(peer_url in m.peer_urls for m in current):
            out = self._reconfigure("member", "add", name, f"--peer-urls={peer_url}")
            for line in out.splitlines():
                if line.startswith(INITIAL_CLUSTER_KEY):
                    return line[len(INITIAL_CLUSTER_KEY):].strip().strip('"')
            current = self.members()
        return initial_cluster(current, name, peer_url)

    def remove(self, peer_url: str) -> bool:
        """`member remove` of the member with `peer_url`, asked of the other members; False
        when no such member is left (already removed)."""
        current = self.members()
        leaving = [m for m in current if peer_url in m.peer_urls]
        if not leaving:
            return False
        others = [u for m in current if m not in leaving for u in m.client_urls]
        self._reconfigure("member", "remove", leaving[0].hex_id, endpoints=others or None)
        return True


def initial_cluster(members: Sequence[Member], name: str, peer_url: str) -> str:
    """`--initial-cluster` for a member `name` joining `members` (pure): every started member
    by its name, and the joining one (not yet named in the list) as `name`."""
    parts = []
    for member in members:
        member_name = name if peer_url in member.peer_urls else member.name
        if member_name:
            parts += [f"{member_name}={url}" for url in member.peer_urls]
    if not any(peer_url in m.peer_urls for m in members):
        parts.append(f"{name}={peer_url}")
    return ",".join(parts)
