"""The SSH provider's pure parts: the cluster file's SSH keys (agent, bastion, known_hosts,
host key checking), where a node's files go, the supervisor's systemd unit, this machine's
copies of the certificates its probes use, and the node script's helpers."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from corral.install import node_ops
from corral.install.desired import DesiredCluster
from corral.install.providers.ssh import SshProvider
from corral.install.providers.ssh_support import remote_paths, supervisor_unit
from corral.install.ssh_connect import HostKeys, SshTarget
from corral.install.validate import ClusterFileError, load_cluster_file

EXAMPLE = Path(__file__).parents[2] / "examples" / "ha-local.yml"


def ssh_file(tmp_path: Path, top: str = "", node_extra: str = "", key: bool = True) -> Path:
    """examples/ha-local.yml as provider ssh, with `top` keys and `node_extra` on node 1."""
    text = EXAMPLE.read_text().replace("provider: local\n", f"provider: ssh\n{top}")
    text = text.replace("    hostname_override: node-1\n",
                        f"    hostname_override: node-1\n    user: root\n{node_extra}")
    for n in (2, 3):
        text = text.replace(f"    hostname_override: node-{n}\n",
                            f"    hostname_override: node-{n}\n    user: root\n")
    if key:
        (tmp_path / "id_ed25519").write_text("key")
        text = text.replace("provider: ssh\n", "provider: ssh\nssh_key_path: id_ed25519\n")
    path = tmp_path / "cluster.yml"
    path.write_text(text)
    return path


def load(path: Path) -> DesiredCluster:
    return load_cluster_file(path)


def test_known_hosts_and_host_key_checking_are_read_relative_to_the_file(tmp_path: Path) -> None:
    """`ssh_known_hosts_path` is relative to the cluster file; checking defaults to strict;
    `accept-new` and `false` are the other two."""
    desired = load(ssh_file(tmp_path, "ssh_known_hosts_path: hosts/known\n"))
    assert desired.ssh.known_hosts == tmp_path / "hosts" / "known"
    assert desired.ssh.host_key_checking == "strict"
    accept = load(ssh_file(tmp_path, "ssh_strict_host_key_checking: accept-new\n"))
    assert accept.ssh.host_key_checking == "accept-new"
    off = load(ssh_file(tmp_path, "ssh_strict_host_key_checking: false\n"))
    assert off.ssh.host_key_checking == "off" and off.ssh.known_hosts is None


def test_a_wrong_host_key_checking_value_is_refused(tmp_path: Path) -> None:
    """Anything but true, false or accept-new is an error naming the key."""
    with pytest.raises(ClusterFileError) as caught:
        load(ssh_file(tmp_path, "ssh_strict_host_key_checking: ask\n"))
    assert "ssh_strict_host_key_checking" in str(caught.value)


def test_ssh_agent_auth_needs_no_key_file(tmp_path: Path) -> None:
    """With `ssh_agent_auth: true` and no key anywhere, the file passes (RKE's default key
    is not required) and the nodes log in with the agent's keys only."""
    desired = load(ssh_file(tmp_path, "ssh_agent_auth: true\n", key=False))
    assert all(n.ssh_agent_auth and n.ssh_key_path is None for n in desired.nodes)


def test_a_node_can_turn_the_agent_on_for_itself(tmp_path: Path) -> None:
    """`ssh_agent_auth` on one node: that node only; the others keep the cluster's key."""
    desired = load(ssh_file(tmp_path, node_extra="    ssh_agent_auth: true\n"))
    assert [n.ssh_agent_auth for n in desired.nodes] == [True, False, False]
    assert desired.nodes[1].ssh_key_path == tmp_path / "id_ed25519"


def test_the_bastion_host_takes_rke_keys_and_the_clusters_key(tmp_path: Path) -> None:
    """`bastion_host` with address, port and user; its key defaults to the cluster's."""
    top = "bastion_host:\n  address: 10.0.0.9\n  port: \"2222\"\n  user: jump\n"
    bastion = load(ssh_file(tmp_path, top)).ssh.bastion
    assert bastion is not None
    assert (bastion.address, bastion.port, bastion.user) == ("10.0.0.9", 2222, "jump")
    assert bastion.ssh_key_path == tmp_path / "id_ed25519"


def test_a_bastion_without_an_address_is_refused_with_rkes_words(tmp_path: Path) -> None:
    """RKE's message for a bastion host without address."""
    with pytest.raises(ClusterFileError) as caught:
        load(ssh_file(tmp_path, "bastion_host:\n  user: jump\n"))
    assert "Address for bastion host is not provided" in str(caught.value)


def test_a_node_reached_over_ssh_keeps_its_files_in_the_linux_places() -> None:
    """Certificates and configuration under /etc/corral, data and run/ under
    /var/lib/corral, logs under /var/log/corral, absolute paths of the file as they are."""
    paths = remote_paths("node-1")
    assert paths.file("pki/ca.pem") == Path("/etc/corral/pki/ca.pem")
    assert paths.file("server-tls/cert.pem") == Path("/etc/corral/server-tls/cert.pem")
    assert paths.file("ingress/ingress.yml") == paths.ingress_config
    assert paths.supervisor_spec == Path("/var/lib/corral/run/supervisor.json")
    assert paths.etcd_data == Path("/var/lib/corral/etcd")
    assert paths.log("etcd") == Path("/var/log/corral/etcd.log")
    assert paths.inside("/var/log/auditlog/a.log") == Path("/var/log/auditlog/a.log")


def test_the_supervisor_unit_restarts_it_and_appends_to_its_log() -> None:
    """ExecStart is the quoted command line; Restart=always; enabled for multi-user."""
    argv = ("/opt/corral/releases/x/venv/bin/python", "-m", "corral.cli.main", "supervise",
            "--node-dir", "/var/lib/corral")
    unit = supervisor_unit(argv, "/var/log/corral/supervisor.log")
    assert f"ExecStart={shlex.join(argv)}\n" in unit
    assert "Restart=always\n" in unit and "WantedBy=multi-user.target\n" in unit
    assert "StandardOutput=append:/var/log/corral/supervisor.log\n" in unit


def test_this_machine_probes_with_its_copy_of_a_nodes_certificates(tmp_path: Path) -> None:
    """A probe's CA under the node's /etc/corral maps to `<base>/nodes/<node>/…` here; other
    paths, and the local load balancer's, stay as they are."""
    desired = load(ssh_file(tmp_path))
    provider = SshProvider(desired, tmp_path / "base")
    paths = provider.node_paths("node-1")
    assert provider.local_path(paths, "/etc/corral/pki/ca.pem") == str(
        tmp_path / "base" / "nodes" / "node-1" / "pki" / "ca.pem")
    assert provider.local_path(paths, "/elsewhere/ca.pem") == "/elsewhere/ca.pem"
    assert provider.local_path(provider.lb_paths(), "/etc/corral/pki/ca.pem") == (
        "/etc/corral/pki/ca.pem")
    assert provider.ingress_endpoint(desired.nodes[0]) == "127.0.1.1:80"


def test_known_hosts_names_a_host_off_port_22_in_brackets() -> None:
    """OpenSSH's form: `host` on 22, `[host]:port` elsewhere; ~/.ssh/known_hosts default."""
    target = SshTarget("node [a]", "10.0.0.1", 22, "root", None, False)
    assert target.address == "10.0.0.1"
    assert SshTarget("node [a]", "10.0.0.1", 2222, "root", None, False).address == (
        "[10.0.0.1]:2222")
    assert HostKeys(None, "strict").path == Path("~/.ssh/known_hosts").expanduser()


def test_proc_net_tcp_addresses_decode() -> None:
    """The node script reads listeners from /proc/net/tcp{,6}: little-endian hex words."""
    assert node_ops._address("0100007F") == "127.0.0.1"
    assert node_ops._address("0109007F") == "127.0.9.1"
    assert node_ops._address("00000000000000000000000001000000") == "::1"


def test_the_node_script_answers_one_json_object_even_on_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown operation or bad arguments: {"error": …} on stdout, exit 0 (the provider
    names the node and reports it)."""
    assert node_ops.main(["-", "nonsense", "{}"]) == 0
    assert '"error": "KeyError' in capsys.readouterr().out
