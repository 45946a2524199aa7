"""`load_cluster_file`: RKE's cluster file, with Rancher's templates in its `addons`, read and
checked, and turned into the `DesiredCluster` that `corral up` builds.

Every check is a small `validate_x()` returning problems; nothing stops at the first one. One
`ClusterFileError` lists every error as `file:line: key: message — fix: …` (RKE's own message
where RKE has one); warnings (RKE keys Corral does not use, ignored Kubernetes objects, an even
number of etcd nodes) travel in `DesiredCluster.warnings`, rendered the same way.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from collections.abc import Iterable
from pathlib import Path

import yaml
from cryptography import x509

from corral.config.errors import ConfigError, Loc, Problem, format_loc
from corral.config.loader import Loaded, load_model
from corral.config.units import parse_duration
from corral.install import rancher, trust
from corral.install.addons import Document, Findings, ignored_note, pick, read_documents
from corral.install.desired import (
    DEFAULT_SNAPSHOT_INTERVAL_HOURS,
    DEFAULT_SNAPSHOT_RETENTION,
    ROLES,
    DesiredCluster,
    LoadBalancerSpec,
    NodeSpec,
    SnapshotSpec,
)
from corral.install.model import ClusterFile, RkeModel
from corral.install.placeholders import placeholder_in, placeholder_problems, tab_problems
from corral.install.validate_ssh import agent_auth as _agent
from corral.install.validate_ssh import host_key as _key
from corral.install.validate_ssh import resolve_path as _resolve
from corral.install.validate_ssh import ssh_options, validate_ssh_keys

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_RFC1123 = (
    "[a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com')]"
)


class ClusterFileError(ConfigError):
    """The cluster file cannot be used. `problems` holds every error; `str()` is one line per
    error, `file:line: key: message — fix: …`; `warnings` the warnings found alongside."""

    def __init__(self, problems: list[Problem], warnings: Iterable[Problem] = ()) -> None:
        super().__init__(problems)
        self.warnings = tuple(str(warning) for warning in warnings)


Cluster = Loaded[ClusterFile]


def load_cluster_file(path: str | Path) -> DesiredCluster:
    """The validated cluster file at `path`, or ClusterFileError listing every problem."""
    file = Path(path)
    try:
        loaded = load_model(path, ClusterFile)
    except ConfigError as exc:
        raise ClusterFileError(_tabs_instead(exc.problems, file, str(path))) from None
    root = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    assert root is not None  # the loader has parsed it: a non-empty mapping
    return desired_cluster(loaded, root, file)


def _tabs_instead(problems: list[Problem], file: Path, source: str) -> list[Problem]:
    """A syntax error on a tab-indented line: every such line, named, instead of a parser trace."""
    try:
        tabs = tab_problems(file.read_text(encoding="utf-8"), source)
    except (OSError, UnicodeDecodeError):
        return problems
    return tabs if {p.line for p in tabs} & {p.line for p in problems} else problems


def desired_cluster(loaded: Cluster, root: yaml.Node, file: Path) -> DesiredCluster:
    """Run every check on the parsed file (`root` is its node tree); build the DesiredCluster."""
    model, source = loaded.model, loaded.source
    out = Findings()
    out.errors += placeholder_problems(root, source, format_loc, skip=("addons",))
    out.warnings += validate_unused(loaded)
    out.errors += validate_hosts(loaded)
    out.errors += validate_duplicates(loaded)
    errors, warnings = validate_roles(loaded)
    out.errors += errors
    out.warnings += warnings
    out.errors += validate_local(loaded)
    out.errors += validate_ssh_keys(loaded, file.parent)
    out.errors += validate_ingress_provider(loaded)
    snapshots = validate_etcd(loaded, out)
    lb, lb_chain = validate_load_balancer(loaded, file.parent, out)

    documents, unreadable = read_addons(loaded, root, file.parent, out)
    found, problems = pick(documents)
    out.errors += problems
    anchor_line = loaded.line_of(("addons",)) if "addons" in model.model_fields_set else None

    def anchor(message: str, fix: str) -> None:
        if not unreadable:
            out.errors.append(Problem(source, anchor_line, "addons", message, fix))

    ca = trust.cacerts(found, out)
    server = rancher.server_settings(found, ca, anchor, out)
    ingress, ingress_chain = rancher.ingress_settings(found, anchor, out)
    trust.validate_trust(loaded, found, ca[0], server.no_cacerts, lb, lb_chain, ingress_chain, out)
    found.ignored += [
        doc for doc in (*found.secrets.values(), *found.services.values())
        if doc.label not in out.used
    ]
    note = ignored_note(found, source, anchor_line)
    if note is not None:
        out.warnings.append(note)
    if out.errors or ingress is None:
        raise ClusterFileError(_ordered(out.errors, source), _ordered(out.warnings, source))
    return DesiredCluster(
        source=file, cluster_name=model.cluster_name, provider=model.provider,
        nodes=build_nodes(model, file.parent), server=server, ingress=ingress,
        load_balancer=lb, snapshots=snapshots, private_registry=private_registry(model),
        ssh=ssh_options(model, file.parent),
        warnings=tuple(str(w) for w in _ordered(out.warnings, source)),
    )


def _ordered(problems: list[Problem], source: str) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file != source, p.file, p.line or 0))


def validate_unused(loaded: Cluster) -> list[Problem]:
    """A warning per key RKE knows and Corral does not use."""
    model = loaded.model
    sections: list[tuple[Loc, RkeModel | None]] = [
        ((), model), (("services",), model.services), (("services", "etcd"), model.services.etcd),
        (("services", "etcd", "backup_config"), model.services.etcd.backup_config),
        (("ingress",), model.ingress), (("bastion_host",), model.bastion_host),
    ]
    sections += [(("nodes", i), node) for i, node in enumerate(model.nodes)]
    sections += [(("private_registries", i), r) for i, r in enumerate(model.private_registries)]
    problems = []
    for loc, section in sections:
        for key in section.unused_keys() if section is not None else []:
            problems.append(
                loaded.problem((*loc, key), f"RKE's `{key}` has no meaning for Corral: ignored",
                               "remove it to silence this warning")
            )
    return problems


def validate_hosts(loaded: Cluster) -> list[Problem]:
    """RKE's checks of each host: address, user (SSH only), role, hostname_override."""
    problems = []
    for i, node in enumerate(loaded.model.nodes):
        n, loc = i + 1, ("nodes", i)
        if not node.address:
            problems.append(loaded.problem((*loc, "address"),
                            f"Address for host ({n}) is not provided",
                            "give `address:` the node's IP address or hostname"))
        if loaded.model.provider == "ssh" and not node.user:
            problems.append(loaded.problem((*loc, "user"), f"User for host ({n}) is not provided",
                            "give `user:` the SSH user of the node (usually root)"))
        if not node.role:
            problems.append(loaded.problem((*loc, "role"), f"Role for host ({n}) is not provided",
                            "give `role:` a list of controlplane, etcd, worker"))
        for j, role in enumerate(node.role):
            if role not in ROLES:
                close = difflib.get_close_matches(role, ROLES, n=1)
                hint = f"did you mean `{close[0]}`?" if close else "use controlplane, etcd, worker"
                problems.append(loaded.problem((*loc, "role", j),
                                f"Role [{role}] for host ({n}) is not recognized", hint))
        name = node.hostname_override
        if name and not placeholder_in(name) and (
            len(name) > 253 or not rancher.DNS_1123_SUBDOMAIN.fullmatch(name)
        ):
            problems.append(loaded.problem((*loc, "hostname_override"),
                            f"Hostname_override [{name}] for host ({n}) is not valid: {_RFC1123}",
                            "use lower-case letters, digits, '-' and '.'"))
    return problems


def validate_duplicates(loaded: Cluster) -> list[Problem]:
    """RKE's duplicate node (an address, or a name: hostname_override, else the address), and
    Corral's: an internal_address reused."""
    problems = []
    nodes = loaded.model.nodes
    seen: dict[str, dict[str, int]] = {"address": {}, "hostname_override": {},
                                       "internal_address": {}}
    for i, node in enumerate(nodes):
        values = {
            "address": node.address,
            "hostname_override": node.hostname_override or node.address,
            "internal_address": node.internal_address,
        }
        for key, value in values.items():
            if not value or placeholder_in(value):
                continue
            first = seen[key].setdefault(value, i)
            if first == i or (key == "hostname_override" and node.address == nodes[first].address):
                continue  # the same node, or the duplicate address already reported
            if key == "internal_address":
                message = f"internal_address {value} is also nodes[{first}]'s"
            else:
                message = f"Cluster can't have duplicate node: {value}"
            where = key if getattr(node, key) else "address"
            problems.append(loaded.problem(("nodes", i, where), message,
                            f"give each node its own {where} (nodes[{first}] has this one)"))
    return problems


def validate_roles(loaded: Cluster) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings): RKE's etcd plane host, Corral's controlplane and worker hosts, and the
    quorum advice for an even number of etcd nodes (RKE allows it: a warning)."""
    nodes = loaded.model.nodes
    loc = ("nodes",)
    if not nodes:
        return [loaded.problem(loc, "Cluster must have at least one etcd plane host: please "
                               "specify one or more etcd in cluster config",
                               "add `nodes:` (Rancher's template has three)")], []
    count: dict[str, int] = {role: sum(role in node.role for node in nodes) for role in ROLES}
    errors, warnings = [], []
    if not count["etcd"]:
        errors.append(loaded.problem(loc, "Cluster must have at least one etcd plane host: "
                                     "please specify one or more etcd in cluster config",
                                     "give `etcd` to the role of one node (three for quorum)"))
    for role, runs in (("controlplane", "the servers"), ("worker", "the ingress")):
        if not count[role]:
            errors.append(loaded.problem(loc, f"Cluster must have at least one {role} host: "
                                         f"Corral runs {runs} on them",
                                         f"give `{role}` to the role of one or more nodes"))
    etcd = count["etcd"]
    if etcd and etcd % 2 == 0:
        warnings.append(loaded.problem(
            loc, f"{etcd} etcd nodes: an even number adds no fault tolerance (quorum is "
            f"{etcd // 2 + 1} of {etcd}: the store survives {(etcd - 1) // 2} lost node(s), as "
            f"with {etcd - 1})", "use an odd number of etcd nodes: 3 (Rancher's HA guide) or 5"))
    return errors, warnings


def validate_local(loaded: Cluster) -> list[Problem]:
    """`provider: local` runs every node on this machine: its addresses must be loopback."""
    if loaded.model.provider != "local":
        return []
    problems = []
    for i, node in enumerate(loaded.model.nodes):
        for key in ("address", "internal_address"):
            value = getattr(node, key)
            if not value or placeholder_in(value):
                continue
            try:
                inside = ipaddress.ip_address(value) in LOOPBACK
            except ValueError:
                inside = False
            if not inside:
                problems.append(loaded.problem(
                    ("nodes", i, key), f"{value} is not in 127.0.0.0/8: provider local runs "
                    "every node on this machine, each on its own loopback address",
                    "use 127.0.1.1, 127.0.1.2, … (one per node), or `provider: ssh`"))
    return problems


def validate_ingress_provider(loaded: Cluster) -> list[Problem]:
    """RKE's `ingress.provider`: nginx or none; Corral needs the ingress (it is the nginx)."""
    provider = loaded.model.ingress.provider
    loc = ("ingress", "provider")
    if provider == "none":
        return [loaded.problem(loc, "Corral's HA topology needs the ingress on every worker "
                               "(the load balancer forwards to it)", "remove `provider: none`")]
    if provider != "nginx":
        return [loaded.problem(loc, f"Ingress controller {provider} is incorrect",
                               "use nginx (Corral runs its own ingress on every worker)")]
    return []


def validate_etcd(loaded: Cluster, out: Findings) -> SnapshotSpec:
    """The snapshot settings: RKE's `backup_config`, else the older `snapshot`/`backup` with
    `creation` (the interval) and `retention` (how long, turned into a number of snapshots)."""
    etcd = loaded.model.services.etcd
    loc = ("services", "etcd")
    if etcd.external_urls:
        out.errors.append(loaded.problem((*loc, "external_urls"), "Corral runs etcd on the "
                                         "nodes with role etcd; an external etcd is not used",
                                         "remove `external_urls` (and give nodes role etcd)"))
    backup = etcd.backup_config
    if backup is not None:
        return SnapshotSpec(
            enabled=backup.enabled is not False,  # RKE: backup_config without `enabled` is on
            interval_hours=backup.interval_hours or DEFAULT_SNAPSHOT_INTERVAL_HOURS,
            retention=backup.retention or DEFAULT_SNAPSHOT_RETENTION,
        )
    seconds = {"creation": 12 * 3600.0, "retention": 72 * 3600.0}  # RKE's defaults: 12h, 72h
    for key in seconds:
        text = getattr(etcd, key)
        if text is None:
            continue
        try:
            value = parse_duration(text)
        except ValueError as exc:
            out.errors.append(loaded.problem((*loc, key), str(exc), 'write a duration such as '
                                             '"12h", "90m" or "30s"'))
            continue
        if value <= 0:
            out.errors.append(loaded.problem((*loc, key), f"{text!r} is no time at all",
                                             'write a duration such as "6h" or "24h"'))
            continue
        seconds[key] = value
    return SnapshotSpec(
        enabled=bool(etcd.snapshot or etcd.backup),
        interval_hours=max(1, round(seconds["creation"] / 3600)),
        retention=max(1, math.ceil(seconds["retention"] / seconds["creation"])),
        interval_s=seconds["creation"],
        retention_s=seconds["retention"],
    )


def validate_load_balancer(
    loaded: Cluster, base: Path, out: Findings
) -> tuple[LoadBalancerSpec | None, list[x509.Certificate]]:
    """Corral's `load_balancer:`: listeners, and TLS from cert + key files or `generate: true`."""
    lb = loaded.model.load_balancer
    if lb is None:
        return None, []
    loc: Loc = ("load_balancer", "tls")
    if lb.http_listen is not None and lb.http_listen == lb.listen:
        out.errors.append(loaded.problem(("load_balancer", "http_listen"), "is the same as "
                                         "`listen`", "give the HTTP redirect its own port"))
    tls = lb.tls
    chain: list[x509.Certificate] = []
    if tls is None or not (tls.generate or tls.cert or tls.key):
        out.errors.append(loaded.problem(loc, "the load balancer needs a certificate",
                                         "write `tls: {generate: true}` or `tls: {cert: "
                                         "chain.pem, key: key.pem}`"))
    elif tls.generate and (tls.cert or tls.key):
        out.errors.append(loaded.problem((*loc, "generate"), "`generate: true` and `cert`/`key` "
                                         "both given", "keep one: your files or generate"))
    elif not tls.generate:
        for name in ("cert", "key"):
            if not getattr(tls, name):
                out.errors.append(loaded.problem(loc, f"`{name}` is missing (`cert` and `key` "
                                                 "go together)", f"add `{name}: <PEM file>`"))
        if tls.cert and tls.key:
            chain = trust.lb_certificates(loaded, _resolve(tls.cert, base), _resolve(tls.key, base),
                                     out)
    cert = _resolve(tls.cert, base) if tls is not None and tls.cert else None
    key = _resolve(tls.key, base) if tls is not None and tls.key else None
    generate = tls is not None and tls.generate
    spec = LoadBalancerSpec(listen=lb.listen, http_listen=lb.http_listen or "", cert_file=cert,
                            key_file=key, generate=generate)
    return spec, chain


def read_addons(
    loaded: Cluster, root: yaml.Node, base: Path, out: Findings
) -> tuple[list[Document], bool]:
    """The objects of `addons` (lines offset to the cluster file's) and of `addons_include`, and
    whether some could not be read (then an object that seems missing may be among those)."""
    model, source = loaded.model, loaded.source
    before = len(out.errors)
    documents: list[Document] = []
    if model.addons.strip():
        node = next((value for key, value in root.value if key.value == "addons"), None)
        literal = getattr(node, "style", None) == "|"  # None: brought in by a `<<` merge
        first_line = (node.start_mark.line + (2 if literal else 1)) if node is not None else (
            loaded.line_of(("addons",)) or 1)
        docs, problems = read_documents(model.addons, source=source, first_line=first_line,
                                        where="addons")
        documents += docs
        out.errors += problems
        if not literal:
            out.warnings.append(loaded.problem(("addons",), "not a literal block: lines inside "
                                               "it are not exact", "write `addons: |-` as "
                                               "Rancher's templates do"))
    for i, item in enumerate(model.addons_include):
        loc = ("addons_include", i)
        if item.startswith(("http://", "https://")):
            out.errors.append(loaded.problem(loc, "Corral reads addons only from local files",
                                             "download it and give its path"))
            continue
        path = _resolve(item, base)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.errors.append(loaded.problem(loc, f"cannot read {path}: {exc}",
                                             "give the path of a YAML file, relative to this "
                                             "file"))
            continue
        docs, problems = read_documents(text, source=str(path), first_line=1,
                                        where=f"addons_include[{i}]")
        documents += docs
        out.errors += problems
    unreadable = len(out.errors) > before
    for doc in documents:
        out.errors += placeholder_problems(doc.root, doc.source, doc.key)
    return documents, unreadable


def build_nodes(model: ClusterFile, base: Path) -> tuple[NodeSpec, ...]:
    """The validated nodes as NodeSpec (name: hostname_override, else the address)."""
    nodes = []
    for node in model.nodes:
        address = node.address or ""
        agent = _agent(node.ssh_agent_auth, model.ssh_agent_auth)
        nodes.append(NodeSpec(
            name=node.hostname_override or address, address=address,
            internal_address=node.internal_address or address,
            roles=frozenset(role for role in ROLES if role in node.role),
            user=node.user or "root", port=node.port,
            ssh_key_path=_key(node.ssh_key_path, model, agent, base),
            labels=dict(node.labels), ssh_agent_auth=agent,
        ))
    return tuple(nodes)


def private_registry(model: ClusterFile) -> str:
    """The `is_default` registry's url, else the first one's ("" without any)."""
    registries = [r for r in model.private_registries if r.url]
    default = [r for r in registries if r.is_default]
    return (default or registries)[0].url if registries else ""
