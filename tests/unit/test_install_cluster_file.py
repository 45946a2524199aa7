"""The cluster file of `corral up`: RKE's keys and messages, Corral's additions, and every
problem as `file:line: key: message — fix: …` with the line the operator must edit."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from corral.install.validate import ClusterFileError, load_cluster_file

EXAMPLE = Path(__file__).parents[2] / "examples" / "ha-local.yml"
GUIDE_NODES = """\
nodes:
  - address: IP_ADDRESS_1
    # THE IP ADDRESS OR HOSTNAME OF THE NODE
\tuser: USER
    # USER WITH ADMIN ACCESS. USUALLY `root`
\trole: [controlplane,etcd,worker]
\tssh_key_path: ~/.ssh/id_rsa
    # PATH TO SSH KEY THAT AUTHENTICATES ON YOUR WORKSTATION
    # USUALLY THE VALUE ABOVE
  - address: IP_ADDRESS_2
\tuser: USER
\trole: [controlplane,etcd,worker]
\tssh_key_path: ~/.ssh/id_rsa
"""


def edited(text: str, *edits: tuple[str, str]) -> str:
    """`text` with each (old, new) replaced once; old must be there."""
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth line containing `needle` (comment lines skipped)."""
    rows = enumerate(text.split("\n"), start=1)
    hits = [n for n, row in rows if needle in row and not row.lstrip().startswith("#")]
    return hits[nth - 1]


def problems_of(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rendered problems of `text` written as c.yml (the name every problem starts with)."""
    (tmp_path / "c.yml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster_file("c.yml")
    return [str(problem) for problem in caught.value.problems]


def warnings_of(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """The warnings of an accepted `text` written as c.yml."""
    (tmp_path / "c.yml").write_text(text)
    monkeypatch.chdir(tmp_path)
    return load_cluster_file("c.yml").warnings


LOCAL = EXAMPLE.read_text()
NODE2 = "  - address: 127.0.1.2"
NODE3 = "  - address: 127.0.1.3"
TOP = "cluster_name: ha-local"  # where a test adds top-level keys
NODES = LOCAL[LOCAL.index("nodes:\n"):LOCAL.index("\n\n", LOCAL.index("nodes:\n"))]

# (id, edits of examples/ha-local.yml, (needle of the expected line, nth), expected text)
ERRORS = [
    ("no address", [(NODE2, '  - address: ""')], ('address: ""', 1),
     "nodes[1].address: Address for host (2) is not provided — fix: give `address:`"),
    ("no role", [("role: [controlplane, etcd, worker]\n  - address: 127.0.1.2",
                  "role: []\n  - address: 127.0.1.2")], ("role: []", 1),
     "nodes[0].role: Role for host (1) is not provided"),
    ("unknown role", [("role: [controlplane, etcd, worker]", "role: [controlplane, etdc]")],
     ("etdc", 1), "nodes[0].role[1]: Role [etdc] for host (1) is not recognized — fix: did you "
     "mean `etcd`?"),
    ("role not a list", [("role: [controlplane, etcd, worker]", "role: worker")],
     ("role: worker", 1),
     "nodes[0].role: must be a list: write [worker] or [controlplane, etcd, worker]"),
    ("no etcd", [("etcd, worker]", "worker]")] * 3, ("nodes:", 1),
     "nodes: Cluster must have at least one etcd plane host: please specify one or more etcd "
     "in cluster config — fix: give `etcd` to the role of one node"),
    ("no controlplane", [("[controlplane, ", "[")] * 3, ("nodes:", 1),
     "nodes: Cluster must have at least one controlplane host: Corral runs the servers on them"),
    ("no worker", [(", worker]", "]")] * 3, ("nodes:", 1),
     "nodes: Cluster must have at least one worker host: Corral runs the ingress on them"),
    ("no nodes", [(NODES, "nodes: []")], ("nodes: []", 1),
     "nodes: Cluster must have at least one etcd plane host"),
    ("address reused", [(NODE3, "  - address: 127.0.1.1")], ("address: 127.0.1.1", 2),
     "nodes[2].address: Cluster can't have duplicate node: 127.0.1.1 — fix: give each node its "
     "own address (nodes[0] has this one)"),
    ("name reused", [("hostname_override: node-3", "hostname_override: node-1")],
     ("node-1", 2), "nodes[2].hostname_override: Cluster can't have duplicate node: node-1"),
    ("internal address reused",
     [(NODE2, NODE2 + "\n    internal_address: 127.0.2.1"),
      (NODE3, NODE3 + "\n    internal_address: 127.0.2.1")], ("internal_address", 2),
     "nodes[2].internal_address: internal_address 127.0.2.1 is also nodes[1]'s"),
    ("hostname_override not DNS-1123", [("node-1", "Node_1")], ("Node_1", 1),
     "nodes[0].hostname_override: Hostname_override [Node_1] for host (1) is not valid: "
     "[a lowercase RFC 1123 subdomain"),
    ("local needs loopback", [("127.0.1.3", "10.0.0.3")], ("10.0.0.3", 1),
     "nodes[2].address: 10.0.0.3 is not in 127.0.0.0/8: provider local runs every node on this "
     "machine"),
    ("local internal address", [(NODE2, NODE2 + "\n    internal_address: 192.168.1.2")],
     ("192.168.1.2", 1), "nodes[1].internal_address: 192.168.1.2 is not in 127.0.0.0/8"),
    ("local host name", [("127.0.1.3", "node3.example.com")], ("node3.example.com", 1),
     "nodes[2].address: node3.example.com is not in 127.0.0.0/8"),
    ("unknown top-level key", [("cluster_name:", "clustr_name:")], ("clustr_name", 1),
     "clustr_name: unknown key `clustr_name` — fix: remove it, or did you mean `cluster_name`?"),
    ("unknown node key", [(NODE2, "  - adress: 127.0.1.2")], ("adress", 1),
     "nodes[1].adress: unknown key `adress` — fix: remove it, or did you mean `address`?"),
    ("duplicate key", [("cluster_name: ha-local", "cluster_name: ha-local\ncluster_name: b")],
     ("cluster_name: b", 1), "cluster_name: duplicate key `cluster_name`"),
    ("unknown provider", [("\nprovider: local", "\nprovider: lcoal")], ("lcoal", 1),
     "provider: input should be 'local' or 'ssh'"),
    ("ingress none", [(TOP, TOP + "\ningress:\n  provider: none")],
     ("provider: none", 1), "ingress.provider: Corral's HA topology needs the ingress on every "
     "worker"),
    ("ingress controller", [(TOP, TOP + "\ningress: {provider: traefik}")],
     ("traefik", 1), "ingress.provider: Ingress controller traefik is incorrect"),
    ("external etcd", [(TOP, TOP + "\nservices:\n  etcd:\n"
                        "    external_urls: [https://10.0.0.9:2379]")], ("external_urls", 1),
     "services.etcd.external_urls: Corral runs etcd on the nodes with role etcd"),
    ("snapshot no time", [(TOP, TOP + "\nservices:\n  etcd:\n"
                           "    snapshot: true\n    creation: 0s")], ("creation", 1),
     "services.etcd.creation: '0s' is no time at all"),
    ("snapshot duration", [(TOP, TOP + "\nservices:\n  etcd:\n"
                            "    snapshot: true\n    retention: soon")], ("retention", 1),
     "services.etcd.retention: 'soon' is not a duration"),
    ("backup_config interval", [(TOP, TOP + "\nservices:\n  etcd:\n"
                                 "    backup_config: {interval_hours: 0}")],
     ("interval_hours", 1), "services.etcd.backup_config.interval_hours: input should be greater"),
    ("lb without tls", [("  tls:\n    generate: true\n", "")], ("load_balancer:", 1),
     "load_balancer.tls: the load balancer needs a certificate — fix: write `tls: {generate: "
     "true}` or `tls: {cert: chain.pem, key: key.pem}`"),
    ("lb cert without key", [("generate: true", "cert: chain.pem")], ("tls:", 1),
     "load_balancer.tls: `key` is missing (`cert` and `key` go together)"),
    ("lb generate and files", [("generate: true", "generate: true\n    cert: chain.pem")],
     ("generate: true", 1),
     "load_balancer.tls.generate: `generate: true` and `cert`/`key` both given"),
    ("lb same listeners", [("http_listen: 127.0.0.1:8080", "http_listen: 127.0.0.1:8443")],
     ("http_listen", 1), "load_balancer.http_listen: is the same as `listen`"),
    ("lb listen", [("listen: 127.0.0.1:8443", "listen: 127.0.0.1:99999")], ("99999", 1),
     "load_balancer.listen: '127.0.0.1:99999' is not host:port"),
    ("placeholder in a node", [("127.0.1.3", "IP_ADDRESS_3")], ("IP_ADDRESS_3", 1),
     "nodes[2].address: the template's placeholder `IP_ADDRESS_3` is not replaced — fix: "
     "replace it with the node's IP address or hostname"),
]


@pytest.mark.parametrize(("edits", "where", "expected"),
                         [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_each_mistake_is_named_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    edits: list[tuple[str, str]], where: tuple[str, int], expected: str,
) -> None:
    """Each mistake is reported as c.yml:<its line>: <key>: <message> — fix: …"""
    text = edited(LOCAL, *edits)
    found = problems_of(tmp_path, text, monkeypatch)
    want = f"c.yml:{line(text, *where)}: {expected}"
    assert any(problem.startswith(want) for problem in found), (want, found)


def test_the_guides_tab_indented_nodes_name_every_tab_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's `nodes` snippet (tabs) yields one problem per tab line, no parser trace."""
    found = problems_of(tmp_path, GUIDE_NODES, monkeypatch)
    tab_lines = [n for n, row in enumerate(GUIDE_NODES.split("\n"), 1) if row.startswith("\t")]
    assert [int(p.split(":")[1]) for p in found] == tab_lines
    assert all("indented with a tab, and YAML allows only spaces" in p for p in found)
    assert not any("cannot start any token" in p for p in found)


def test_guide_placeholders_are_each_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's IP_ADDRESS_X and USER, once its tabs are spaces, are each named."""
    found = problems_of(tmp_path, GUIDE_NODES.replace("\t", "    "), monkeypatch)
    placeholders = [p for p in found if "placeholder" in p]
    assert [p.split(":")[1] for p in placeholders] == ["2", "4", "10", "11"]
    assert "`IP_ADDRESS_1`" in placeholders[0] and "`USER`" in placeholders[1]


def test_every_problem_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several mistakes give one error listing them all, in line order (the schema's problems
    come first: the other checks need the file's shape to be right)."""
    text = edited(LOCAL, (NODE2, '  - address: ""'), ("127.0.1.3", "10.0.0.3"),
                  ("role: [controlplane, etcd, worker]", "role: [controlplane, etdc]"))
    found = problems_of(tmp_path, text, monkeypatch)
    assert len(found) == 3, found
    assert [int(p.split(":")[1]) for p in found] == sorted(int(p.split(":")[1]) for p in found)


def test_ssh_provider_needs_user_and_an_existing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SSH, RKE's user check applies and each node's key file must exist."""
    (tmp_path / "id_rsa").write_text("key")
    text = edited(LOCAL, ("\nprovider: local\n", "\nprovider: ssh\nssh_key_path: id_rsa\n"),
                  (NODE2, NODE2 + "\n    user: root"), (NODE3, NODE3 + "\n    user: root"),
                  ("hostname_override: node-3", "hostname_override: node-3\n    "
                   "ssh_key_path: missing.pem"))
    found = problems_of(tmp_path, text, monkeypatch)
    assert found == [
        f"c.yml:{line(text, '127.0.1.1')}: nodes[0].user: User for host (1) is not provided — "
        "fix: give `user:` the SSH user of the node (usually root)",
        f"c.yml:{line(text, 'missing.pem')}: nodes[2].ssh_key_path: the SSH key missing.pem "
        "does not exist — fix: give the private key that logs in to the node (RKE's default is "
        "~/.ssh/id_rsa); a relative path is relative to this file",
    ]


# (id, edits, expected warning text)
WARNINGS = [
    ("RKE key Corral does not use", [(TOP, TOP + "\nnetwork:\n"
                                      "  plugin: canal\nkubernetes_version: v1.11.1")],
     "network: RKE's `network` has no meaning for Corral: ignored"),
    ("RKE node key", [(NODE2, NODE2 + "\n    docker_socket: /var/run/docker.sock")],
     "nodes[1].docker_socket: RKE's `docker_socket` has no meaning for Corral: ignored"),
    ("RKE service", [(TOP, TOP + "\nservices:\n  kube-api:\n"
                      "    service_cluster_ip_range: 10.43.0.0/16")],
     "services.kube-api: RKE's `kube-api` has no meaning for Corral: ignored"),
    ("four etcd nodes", [(NODE3, "  - address: 127.0.1.4\n    role: [etcd]\n" + NODE3)],
     "nodes: 4 etcd nodes: an even number adds no fault tolerance (quorum is 3 of 4: the store "
     "survives 1 lost node(s), as with 3) — fix: use an odd number of etcd nodes"),
    ("ignored objects", [], "addons: ignored, no meaning for Corral (3 objects): "
     "Namespace/cattle-system (line 46), ServiceAccount/cattle-admin (line 51), "
     "ClusterRoleBinding/cattle-crb (line 57)"),
]


@pytest.mark.parametrize(("edits", "expected"), [c[1:] for c in WARNINGS],
                         ids=[c[0] for c in WARNINGS])
def test_warnings_do_not_stop_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edits: list[tuple[str, str]], expected: str
) -> None:
    """RKE keys Corral ignores, even etcd counts and ignored objects are warnings only."""
    warnings = warnings_of(tmp_path, edited(LOCAL, *edits), monkeypatch)
    assert any(expected in warning for warning in warnings), (expected, warnings)


def test_the_example_becomes_the_desired_cluster() -> None:
    """examples/ha-local.yml: three local nodes with every role, lb with a generated cert."""
    desired = load_cluster_file(EXAMPLE)
    assert desired.provider == "local" and desired.cluster_name == "ha-local"
    assert [n.address for n in desired.nodes] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert [n.name for n in desired.nodes] == ["node-1", "node-2", "node-3"]
    assert all(len(n.roles) == 3 and n.ssh_key_path is None for n in desired.nodes)
    assert desired.fqdn == "localhost" and not desired.ingress.ssl_redirect
    assert desired.load_balancer is not None and desired.load_balancer.generate
    assert (desired.load_balancer.listen, desired.load_balancer.http_listen) == (
        "127.0.0.1:8443", "127.0.0.1:8080")
    assert not desired.server.no_cacerts and desired.server.cacerts_pem == ""
    assert desired.stem == "ha-local" and len(desired.warnings) == 1


@pytest.mark.parametrize(
    ("etcd", "expected"),
    [
        ("backup_config: {interval_hours: 6, retention: 4}", (True, 6, 4)),
        ("backup_config: {enabled: false}", (False, 12, 6)),
        ("backup_config: {}", (True, 12, 6)),
        ("backup: true\n    creation: 6h\n    retention: 24h", (True, 6, 4)),
        ("snapshot: true", (True, 12, 6)),
        ("snapshot: false\n    creation: 6h", (False, 6, 12)),
        ("backup: true\n    creation: 2s\n    retention: 5s", (True, 1, 3)),
    ],
)
def test_snapshot_settings_follow_rke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, etcd: str, expected: tuple[bool, int, int]
) -> None:
    """backup_config wins; the older snapshot/backup with creation and retention still work."""
    text = edited(LOCAL, (TOP, f"{TOP}\nservices:\n  etcd:\n    {etcd}"))
    (tmp_path / "c.yml").write_text(text)
    snapshots = load_cluster_file(tmp_path / "c.yml").snapshots
    assert (snapshots.enabled, snapshots.interval_hours, snapshots.retention) == expected


def test_nodes_take_rke_defaults(tmp_path: Path) -> None:
    """SSH port 22 unless given (as a number or RKE's string), internal address = address,
    the cluster's key for nodes naming none, labels kept, the default private registry."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cluster.pem").write_text("key")
    text = edited(
        LOCAL, ("\nprovider: local\n", "\nprovider: ssh\nssh_key_path: keys/cluster.pem\n"
                "private_registries:\n  - url: a.example.com\n  - url: reg.example.com:5000\n"
                "    is_default: true\n"),
        ("  - address: 127.0.1.1\n", "  - address: 127.0.1.1\n    user: ubuntu\n    port: '2222'\n"
         "    labels: {zone: a}\n    internal_address: 10.1.0.1\n"),
        (NODE2, NODE2 + "\n    user: root"), (NODE3, NODE3 + "\n    user: root\n    port: 2200"),
    )
    (tmp_path / "c.yml").write_text(text)
    desired = load_cluster_file(tmp_path / "c.yml")
    first, second, third = desired.nodes
    assert (first.user, first.port, first.internal_address, dict(first.labels)) == (
        "ubuntu", 2222, "10.1.0.1", {"zone": "a"})
    assert (second.port, second.internal_address, third.port) == (22, "127.0.1.2", 2200)
    assert first.ssh_key_path == tmp_path / "keys" / "cluster.pem"
    assert desired.private_registry == "reg.example.com:5000"


def test_error_renders_one_line_per_problem_and_keeps_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """str(ClusterFileError) is one `file:line: key: message — fix: …` line per problem; the
    warnings found alongside ride on it; it survives pickling (worker processes)."""
    text = edited(LOCAL, (NODE2, '  - address: ""'), (TOP, TOP + "\n"
                                                      "network: {plugin: canal}"))
    (tmp_path / "c.yml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClusterFileError) as caught:
        load_cluster_file("c.yml")
    error = caught.value
    assert str(error).split("\n") == [str(p) for p in error.problems]
    assert any("network" in warning for warning in error.warnings)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_unreadable_cluster_file_is_named(tmp_path: Path) -> None:
    """A missing file is one problem naming it."""
    with pytest.raises(ClusterFileError) as caught:
        load_cluster_file(tmp_path / "nope.yml")
    assert str(caught.value) == f"{tmp_path / 'nope.yml'}: file not found — fix: check the " \
        "path, or create the file"
