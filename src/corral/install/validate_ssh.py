"""The SSH side of the cluster file (`provider: ssh`): each host's key and agent, the bastion
host, known_hosts and host key checking; the checks and what they become in the desired state.
"""

from __future__ import annotations

from pathlib import Path

from corral.config.errors import Loc, Problem
from corral.config.loader import Loaded
from corral.install.desired import BastionSpec, SshOptions
from corral.install.model import ClusterFile
from corral.install.placeholders import placeholder_in

RKE_DEFAULT_SSH_KEY = "~/.ssh/id_rsa"

Cluster = Loaded[ClusterFile]


def resolve_path(path: str, base: Path) -> Path:
    """`~` expanded; a relative path is relative to the cluster file's directory."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base / resolved


def agent_auth(node_value: bool | None, cluster_value: bool) -> bool:
    """A host's `ssh_agent_auth`: its own when given, else the cluster's."""
    return cluster_value if node_value is None else node_value


def validate_ssh_keys(loaded: Cluster, base: Path) -> list[Problem]:
    """`provider: ssh`: each node's SSH key (its own, the cluster's, else RKE's default) exists
    (with `ssh_agent_auth` a node needs no key file); the bastion host has an address."""
    model = loaded.model
    if model.provider != "ssh":
        return []
    problems, reported = [], set()
    hosts: list[tuple[Loc, str | None, bool]] = [
        (("nodes", i), node.ssh_key_path, agent_auth(node.ssh_agent_auth, model.ssh_agent_auth))
        for i, node in enumerate(model.nodes)
    ]
    bastion = model.bastion_host
    if bastion is not None:
        if not bastion.address:
            problems.append(loaded.problem(("bastion_host",), "Address for bastion host is not "
                            "provided", "give `address:` the jump host's IP address or "
                            "hostname, or remove `bastion_host`"))
        hosts.append((("bastion_host",), bastion.ssh_key_path,
                      agent_auth(bastion.ssh_agent_auth, model.ssh_agent_auth)))
    for where, own, agent in hosts:
        loc: Loc
        if own:
            key, loc = own, (*where, "ssh_key_path")
        elif model.ssh_key_path:
            key, loc = model.ssh_key_path, ("ssh_key_path",)
        elif agent:
            continue  # the agent's keys only
        else:
            key, loc = RKE_DEFAULT_SSH_KEY, where
        if placeholder_in(key) or loc in reported or resolve_path(key, base).is_file():
            continue
        reported.add(loc)
        problems.append(loaded.problem(loc, f"the SSH key {key} does not exist",
                        f"give the private key that logs in to the node (RKE's default is "
                        f"{RKE_DEFAULT_SSH_KEY}); a relative path is relative to this file"))
    return problems


def host_key(own: str | None, model: ClusterFile, agent: bool, base: Path) -> Path | None:
    """A host's SSH key: its own, the cluster's, else RKE's default (none with only the
    agent's keys, and none for provider local)."""
    key = own or model.ssh_key_path or (None if agent else RKE_DEFAULT_SSH_KEY)
    return resolve_path(key, base) if key and model.provider == "ssh" else None


def ssh_options(model: ClusterFile, base: Path) -> SshOptions:
    """known_hosts (relative to the cluster file), host key checking and the bastion host."""
    checking = model.ssh_strict_host_key_checking
    mode = "accept-new" if checking == "accept-new" else ("strict" if checking else "off")
    bastion = None
    if model.bastion_host is not None and model.bastion_host.address:
        host = model.bastion_host
        agent = agent_auth(host.ssh_agent_auth, model.ssh_agent_auth)
        bastion = BastionSpec(address=host.address or "", port=host.port,
                              user=host.user or "root",
                              ssh_key_path=host_key(host.ssh_key_path, model, agent, base),
                              ssh_agent_auth=agent)
    known = resolve_path(model.ssh_known_hosts_path, base) if model.ssh_known_hosts_path else None
    return SshOptions(known_hosts=known, host_key_checking=mode,  # type: ignore[arg-type]
                      bastion=bastion)
