"""`bench/up --provider ssh`: how long `corral up` takes to build Rancher's HA install on three
real SSH hosts (the test hosts of tests.support.ssh_hosts: OpenSSH's sshd per node, each in a
mount namespace of its own on 127.0.9.N), from nothing on the nodes to `kubectl get nodes`:
preflight, shipping and installing the offline bundle, every service, the external corral lb.

Per run: a new cluster (empty hosts), then `corral remove`; then a re-run on a running cluster,
a rolling upgrade (a new image tag in the Deployment `cattle`; unless --no-upgrade) and a
certificate rotation (`corral cert rotate`; unless --no-rotate), each under a request stream
through the load balancer.
The offline bundle is built (or found in the cache) once first, as a user's first run would;
its time is reported on its own line. Progress on stderr; the table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tests.e2e.up_ssh.harness import cluster_text, node_entry
from tests.support.net import free_port
from tests.support.ssh_hosts import SshHost, make_key, ssh_hosts, write_known_hosts

from bench.processes import BenchError
from bench.up_load import Load, missing_writes
from bench.up_main import FQDN, UnderLoad
from corral.install.bundle import build_bundle

RKE_GUIDE_S = 101.0
TARGET_S = 60.0
UP_TIMEOUT_S = 300.0
STAMP = re.compile(r"^INFO\[(\d+)\] (.*)$", re.M)


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"bench/up: {message}", file=sys.stderr, flush=True)


def corral(config: Path, *args: str) -> tuple[float, str]:
    """`corral <args> --config <file>`: (wall time, output); BenchError when it fails."""
    argv = [sys.executable, "-m", "corral.cli.main", *args, "--config", str(config)]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=UP_TIMEOUT_S,
                          check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"`corral {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return took, done.stdout


def phase_end(output: str, text: str) -> int | None:
    """The INFO[seconds] of the last progress line containing `text`."""
    found = [int(s) for s, line in STAMP.findall(output) if text in line]
    return found[-1] if found else None


def write_cluster(directory: Path, hosts: list[SshHost], key: Path) -> tuple[Path, int]:
    """The cluster file (tests/e2e/up's with provider ssh) for the three hosts, and the load
    balancer's HTTPS port."""
    known = write_known_hosts(directory / "known_hosts", hosts)
    config = directory / "rancher-cluster.yml"
    https_port = free_port()
    config.write_text(cluster_text([node_entry(h, f"node-{i + 1}") for i, h in enumerate(hosts)],
                                   key, known, https_port, free_port()))
    return config, https_port


def under_load(config: Path, https_port: int, steady_s: float, what: str,
               *command: str) -> UnderLoad:
    """`corral <command>` while a request stream runs through the load balancer (trusting the
    kubeconfig's CA, with its token); what the stream saw."""
    kubeconfig = yaml.safe_load((config.parent / f"kube_config_{config.name}").read_text())
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    context = ssl.create_default_context(cadata=ca.decode())
    token = str(kubeconfig["users"][0]["user"]["token"])
    load = Load(FQDN, https_port, context, token)
    load.start()
    try:
        time.sleep(steady_s)  # a steady stream before the step (a measurement, not a sync)
        took, _ = corral(config, *command)
    finally:
        stats = load.stop()
    lost = missing_writes(FQDN, https_port, context, token, stats.acked)
    say(f"{what} of 3 SSH nodes: {took:.1f} s, "
        f"{stats.reads_failed + stats.writes_failed} requests failed")
    return UnderLoad(took, stats, len(lost))


def rolling_upgrade(config: Path, https_port: int, steady_s: float,
                    tag: str = "v2.0.8") -> UnderLoad:
    """A new image tag in the Deployment `cattle`; `corral up` under load rolls the servers
    out node by node through the load balancer."""
    config.write_text(config.read_text().replace("rancher/rancher:latest",
                                                 f"rancher/rancher:{tag}"))
    return under_load(config, https_port, steady_s, "rolling upgrade", "up")


def cert_rotation(config: Path, https_port: int, steady_s: float) -> UnderLoad:
    """`corral cert rotate` under load: new etcd, server and lb certificates from the same
    cluster CA, node by node."""
    return under_load(config, https_port, steady_s, "certificate rotation", "cert", "rotate")


def _under_load_rows(what: str, detail: str, step: UnderLoad) -> list[tuple[str, str]]:
    stats = step.stats
    return [
        (f"{what}, {detail}", f"{step.took_s:.1f} s"),
        (f"{what}: requests failed",
         f"{stats.reads_failed + stats.writes_failed} of "
         f"{stats.reads_ok + stats.reads_failed + stats.writes_ok + stats.writes_failed}"),
        (f"{what}: acknowledged writes lost", str(step.lost_writes)),
    ]


def report(bundle_s: float, ups: list[float], installs: list[int], rerun: float,
           removes: list[float], upgrade: UnderLoad | None = None,
           rotation: UnderLoad | None = None) -> list[str]:
    """The table (pure)."""
    median = statistics.median(ups)
    rows = [
        ("offline bundle (built, or found in the cache)", f"{bundle_s:.1f} s"),
        ("corral up, new cluster (3 SSH nodes + lb)",
         f"{median:.1f} s" + (f" (median of {len(ups)}: {', '.join(f'{u:.1f}' for u in ups)})"
                              if len(ups) > 1 else "")),
        ("  of which preflight + shipping + installing the bundle",
         f"{statistics.median(installs):.0f} s" if installs else "-"),
        ("  Rancher's HA guide, RKE's run", f"{RKE_GUIDE_S:.0f} s"),
        ("  target", f"< {TARGET_S:.0f} s: {'met' if median < TARGET_S else 'NOT met'}"),
        ("corral up, re-run (nothing to change)", f"{rerun:.1f} s"),
        ("corral remove", f"{statistics.median(removes):.1f} s" if removes else "-"),
    ]
    if upgrade is not None:
        rows += _under_load_rows("rolling upgrade", "3 SSH nodes (new image tag)", upgrade)
    if rotation is not None:
        rows += _under_load_rows("certificate rotation", "3 SSH nodes (cert rotate)", rotation)
    width = max(len(name) for name, _ in rows)
    lines = ["", f"{'measure'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.append(f"corral up: {median:.1f} s for three SSH nodes (RKE in Rancher's HA guide: "
                 f"{RKE_GUIDE_S:.0f} s)")
    return lines


def run_ssh(options: argparse.Namespace) -> list[str]:
    """Every measurement on three SSH hosts; the report lines."""
    runs = 1 if options.quick else max(1, options.runs)
    started = time.monotonic()
    bundle = build_bundle()
    bundle_s = time.monotonic() - started
    say(f"offline bundle {bundle.digest} ready in {bundle_s:.1f} s ({bundle.size / 1e6:.0f} MB)")
    with tempfile.TemporaryDirectory(prefix="corral-bench-up-ssh-") as tmp:
        directory = Path(tmp)
        key = make_key(directory / "id_ed25519")
        ups: list[float] = []
        installs: list[int] = []
        removes: list[float] = []
        with ssh_hosts(directory / "hosts", 3, [key]) as hosts:
            config, https_port = write_cluster(directory, hosts, key)
            upgrade: UnderLoad | None = None
            rotation: UnderLoad | None = None
            try:
                for index in range(runs):
                    took, output = corral(config, "up")
                    ups.append(took)
                    shipped = phase_end(output, "installed on node")
                    if shipped is not None:
                        installs.append(shipped)
                    say(f"run {index + 1}/{runs}: corral up {took:.1f} s (bundle installed at "
                        f"{shipped} s)")
                    if index < runs - 1:
                        removes.append(corral(config, "remove", "--force")[0])
                rerun = corral(config, "up")[0]
                say(f"re-run: {rerun:.1f} s")
                steady = 2.0 if options.quick else options.steady
                if not options.no_upgrade:
                    upgrade = rolling_upgrade(config, https_port, steady)
                if not options.no_rotate:
                    rotation = cert_rotation(config, https_port, steady)
            finally:
                with contextlib.suppress(BenchError):
                    removes.append(corral(config, "remove", "--force")[0])
                left = [pid for host in hosts for pid in host.processes()]
                if left:
                    say(f"{len(left)} process(es) corral remove left are killed with the hosts")
        return report(bundle_s, ups, installs, rerun, removes, upgrade, rotation)
