"""`bench/up`: how long `corral up` takes to build Rancher's HA install on this machine (three
local nodes and the external corral lb; RKE's run in Rancher's HA guide ends at 101 s), and what
clients see when a node is lost under load.

The cluster file is examples/ha-local.yml with the nodes moved to 127.0.<N>.1-3 and the load
balancer to free ports. Per run: `corral up` on a new cluster, then `corral remove`; then a
re-run on a running cluster; then the node-loss run: reads and writes through the load
balancer (bench.up_load), kill -9 of every process of node-2, and the figures: requests failed,
acknowledged writes lost, time until the load balancer ejected the node, longest write pause,
time until kubectl shows it NotReady, and `corral up` bringing it back; then a rolling upgrade
(a new image tag in the Deployment `cattle`) of the three nodes under the same load: its time,
requests failed and acknowledged writes lost. Progress on stderr; the table on stdout.
`--provider ssh` builds three real SSH hosts instead (bench.up_ssh).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from bench.processes import BenchError, run_main
from bench.up_load import EjectionWatch, Load, LoadStats, missing_writes

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ha-local.yml"
RKE_GUIDE_S = 101.0  # "INFO[0101] Finished building Kubernetes cluster successfully"
TARGET_S = 30.0
UP_TIMEOUT_S = 300.0
NOT_READY_TIMEOUT_S = 90.0
NODE_DIR_ENV = "CORRAL_NODE_DIR"
FQDN = "localhost"  # examples/ha-local.yml's


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"bench/up: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    """examples/ha-local.yml moved to its own addresses and ports in `directory`."""

    directory: Path
    third: int = field(default_factory=lambda: random.randrange(160, 240))
    https_port: int = field(default_factory=_free_port)
    http_port: int = field(default_factory=_free_port)

    @property
    def config(self) -> Path:
        return self.directory / "ha-local.yml"

    @property
    def base(self) -> Path:
        return self.directory / "ha-local.corral"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kube_config_ha-local.yml"

    def write(self) -> None:
        """The cluster file."""
        text = EXAMPLE.read_text().replace("127.0.1.", f"127.0.{self.third}.")
        text = text.replace("127.0.0.1:8443", f"127.0.0.1:{self.https_port}")
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{self.http_port}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text)

    def corral(self, *args: str) -> float:
        """Run `corral <args> --config <file>`; its wall time in seconds."""
        argv = [sys.executable, "-m", "corral.cli.main", *args, "--config", str(self.config)]
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=UP_TIMEOUT_S,
                              check=False)
        took = time.monotonic() - started
        if done.returncode != 0:
            raise BenchError(f"`corral {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
        return took

    def processes(self, node: str = "") -> list[int]:
        """Live processes of the cluster (or of one node)."""
        root = str(self.base / "nodes" / node) if node else str(self.base)
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get(NODE_DIR_ENV, "").startswith(root) or (
                    "supervise" in proc.cmdline() and any(root in a for a in proc.cmdline())
                ):
                    found.append(proc.pid)
            except (psutil.Error, OSError):
                continue
        return found

    def context(self) -> ssl.SSLContext:
        data = yaml.safe_load(self.kubeconfig.read_text())
        ca = base64.b64decode(data["clusters"][0]["cluster"]["certificate-authority-data"])
        return ssl.create_default_context(cadata=ca.decode())

    def token(self) -> str:
        data = yaml.safe_load(self.kubeconfig.read_text())
        return str(data["users"][0]["user"]["token"])

    def node_ready(self, name: str) -> bool | None:
        """kubectl's Ready for node `name` (None without kubectl)."""
        if shutil.which("kubectl") is None:
            return None
        done = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "get", "node",
                               name, "--no-headers"], capture_output=True, text=True,
                              timeout=30, check=False)
        fields = done.stdout.split()
        return len(fields) > 1 and fields[1] == "Ready"


def wait(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> float:
    """Seconds until `condition` holds; BenchError after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


@dataclass
class NodeLoss:
    """The figures of the node-loss run."""

    stats: LoadStats
    lost_writes: int
    ejected_first_s: float | None
    ejected_last_s: float | None
    not_ready_s: float | None
    back_s: float
    killed_at: float  # monotonic

    @property
    def longest_write_pause_s(self) -> float:
        """The longest gap between acknowledged writes from the kill on."""
        return self.stats.longest_write_pause_s(self.killed_at)


def node_loss(cluster: LocalCluster, steady_s: float) -> NodeLoss:
    """Load, kill -9 node-2, measure, stop the load, bring node-2 back with `corral up`."""
    load = Load(FQDN, cluster.https_port, cluster.context(), cluster.token())
    watch = EjectionWatch(cluster.base / "lb" / "logs" / "lb.log",
                          f"127.0.{cluster.third}.2:80")
    load.start()
    not_ready: float | None = None
    try:
        time.sleep(steady_s)  # a steady stream before the loss (a measurement, not a sync)
        watch.start()
        killed_at = time.monotonic()
        for pid in cluster.processes("node-2"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        say("node-2 killed (kill -9 of its supervisor and services)")
        if cluster.node_ready("node-2") is not None:
            not_ready = wait(lambda: cluster.node_ready("node-2") is False,
                             NOT_READY_TIMEOUT_S, "node-2 NotReady")
            say(f"kubectl shows node-2 NotReady after {not_ready:.1f} s")
        else:
            time.sleep(steady_s)
    finally:
        stats = load.stop()
        watch.stop()
    lost = missing_writes(FQDN, cluster.https_port, cluster.context(), cluster.token(),
                          stats.acked)
    back = cluster.corral("up")
    say(f"corral up brought node-2 back in {back:.1f} s")
    return NodeLoss(stats, len(lost), watch.first_s, watch.last_s, not_ready, back, killed_at)


@dataclass
class UnderLoad:
    """A step of the cluster's life run under load (the rolling upgrade, a certificate
    rotation): how long it took, what the load saw, acknowledged writes lost."""

    took_s: float
    stats: LoadStats
    lost_writes: int


def rolling_upgrade(cluster: LocalCluster, steady_s: float, tag: str = "v2.0.8") -> UnderLoad:
    """A new image tag in the Deployment `cattle`; `corral up` under load rolls the servers
    out node by node through the load balancer."""
    text = cluster.config.read_text()
    cluster.config.write_text(text.replace("rancher/rancher:latest", f"rancher/rancher:{tag}"))
    load = Load(FQDN, cluster.https_port, cluster.context(), cluster.token())
    load.start()
    try:
        time.sleep(steady_s)  # a steady stream before the upgrade (a measurement, not a sync)
        took = cluster.corral("up")
    finally:
        stats = load.stop()
    lost = missing_writes(FQDN, cluster.https_port, cluster.context(), cluster.token(),
                          stats.acked)
    say(f"rolling upgrade of 3 nodes: {took:.1f} s, {stats.reads_failed + stats.writes_failed} "
        "requests failed")
    return UnderLoad(took, stats, len(lost))


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def report(
    ups: list[float], rerun: float, removes: list[float], loss: NodeLoss | None,
    upgrade: UnderLoad | None = None,
) -> list[str]:
    """The table (pure)."""
    median = statistics.median(ups)
    rows = [
        ("corral up, new cluster (3 nodes + lb)",
         f"{median:.1f} s" + (f" (median of {len(ups)}: {', '.join(f'{u:.1f}' for u in ups)})"
                              if len(ups) > 1 else "")),
        ("  Rancher's HA guide, RKE's run", f"{RKE_GUIDE_S:.0f} s"),
        ("  target", f"< {TARGET_S:.0f} s: {'met' if median < TARGET_S else 'NOT met'}"),
        ("corral up, re-run (nothing to change)", f"{rerun:.1f} s"),
        ("corral remove", f"{statistics.median(removes):.1f} s"),
    ]
    if loss is not None:
        s = loss.stats
        rows += [
            ("node loss: idempotent reads failed",
             f"{s.reads_failed} of {s.reads_ok + s.reads_failed}"),
            ("node loss: writes failed",
             f"{s.writes_failed} of {s.writes_ok + s.writes_failed}"),
            ("node loss: acknowledged writes lost", str(loss.lost_writes)),
            ("node loss: lb ejected node-2 (first..last worker)",
             f"{_s(loss.ejected_first_s)} .. {_s(loss.ejected_last_s)}"),
            ("node loss: longest write pause", f"{loss.longest_write_pause_s:.2f} s"),
            ("node loss: kubectl shows NotReady after", _s(loss.not_ready_s)),
            ("node loss: corral up brings it back", f"{loss.back_s:.1f} s"),
        ]
    if upgrade is not None:
        s = upgrade.stats
        total = s.reads_ok + s.reads_failed + s.writes_ok + s.writes_failed
        rows += [
            ("rolling upgrade, 3 nodes (new image tag)", f"{upgrade.took_s:.1f} s"),
            ("rolling upgrade: requests failed",
             f"{s.reads_failed + s.writes_failed} of {total}"),
            ("rolling upgrade: acknowledged writes lost", str(upgrade.lost_writes)),
        ]
    width = max(len(name) for name, _ in rows)
    lines = ["", f"{'measure'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.append(f"corral up: {median:.1f} s for three local nodes (RKE in Rancher's HA guide: "
                 f"{RKE_GUIDE_S:.0f} s)")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="bench/up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="new-cluster runs (default 3)")
    parser.add_argument("--steady", type=float, default=5.0,
                        help="seconds of load before the node is killed (default 5)")
    parser.add_argument("--no-node-loss", action="store_true", help="skip the node-loss run")
    parser.add_argument("--no-upgrade", action="store_true", help="skip the rolling upgrade")
    parser.add_argument("--no-rotate", action="store_true",
                        help="skip the certificate rotation (--provider ssh)")
    parser.add_argument("--quick", action="store_true", help="1 run, 2 s of steady load")
    parser.add_argument("--no-setup", action="store_true", help="(handled by bench/up)")
    parser.add_argument("--provider", choices=("local", "ssh"), default="local",
                        help="local: three local nodes (default); ssh: three real SSH hosts "
                        "(sshd in mount namespaces, needs root), from nothing installed")
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> list[str]:
    """Every measurement; the report lines."""
    runs = 1 if options.quick else max(1, options.runs)
    steady = 2.0 if options.quick else options.steady
    if not Path("/usr/bin/etcd").exists():
        raise BenchError("/usr/bin/etcd is missing: run scripts/setup")
    if options.provider == "ssh":
        from bench.up_ssh import run_ssh

        return run_ssh(options)
    with tempfile.TemporaryDirectory(prefix="corral-bench-up-") as tmp:
        cluster = LocalCluster(Path(tmp))
        cluster.write()
        ups, removes = [], []
        try:
            for index in range(runs):
                ups.append(cluster.corral("up"))
                say(f"run {index + 1}/{runs}: corral up {ups[-1]:.1f} s")
                if index < runs - 1:
                    removes.append(cluster.corral("remove", "--force"))
            rerun = cluster.corral("up")
            say(f"re-run: {rerun:.1f} s")
            loss = None if options.no_node_loss else node_loss(cluster, steady)
            upgrade = None if options.no_upgrade else rolling_upgrade(cluster, steady)
        finally:
            with contextlib.suppress(BenchError):
                removes.append(cluster.corral("remove", "--force"))
            left = cluster.processes()
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if left:
                say(f"killed {len(left)} process(es) corral remove left")
        return report(ups, rerun, removes, loss, upgrade)


def main(argv: list[str] | None = None) -> int:
    """Run bench/up."""
    options = parse_args(argv)
    return run_main(lambda: run(options), say)


if __name__ == "__main__":
    sys.exit(main())
