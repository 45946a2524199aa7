"""`corral ingress` as a real process, configured the way `corral up` does it: a DesiredCluster,
`ingress_config_for` and `write_ingress_config`."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.config.ingress import IngressConfig
from corral.install.desired import DesiredCluster, IngressSettings, NodeSpec, ServerSettings
from corral.install.ingress_file import ingress_config_for, write_ingress_config
from tests.e2e.lb.harness import REPO_ROOT
from tests.support.net import free_port, port_open, wait_until
from tests.support.procs import ManagedProcess, corral_argv

FQDN = "corral.test"
NODE_ADDRESS = "127.0.0.1"  # where the ingresses listen
TRUSTED_PEER = "127.0.0.2"  # the "external load balancer" clients bind this source address
UNTRUSTED_PEER = "127.0.0.3"
FAST_CHECKS = {"interval": "0.3s", "timeout": "1s", "rise": 2, "fall": 2}


def desired_cluster(**ingress: Any) -> DesiredCluster:
    """A one-node cluster whose Ingress has host FQDN (and the given IngressSettings values)."""
    node = NodeSpec("node-1", NODE_ADDRESS, NODE_ADDRESS, frozenset({"worker", "controlplane"}))
    return DesiredCluster(
        source=Path("cluster.yml"),
        cluster_name="local",
        provider="local",
        nodes=(node,),
        server=ServerSettings(),
        ingress=IngressSettings(host=FQDN, **ingress),
    )


def ingress_config(
    upstreams: Sequence[str],
    trusted_proxies: Sequence[str] = (TRUSTED_PEER,),
    *,
    desired: DesiredCluster | None = None,
    **overrides: Any,
) -> IngressConfig:
    """The installer's configuration for the cluster's node on a free port, with fast health
    checks and no access log unless `overrides` say otherwise."""
    cluster = desired or desired_cluster()
    config = ingress_config_for(
        cluster, cluster.nodes[0], upstreams, trusted_proxies, port=free_port()
    )
    data = config.model_dump(mode="json")
    data.update({"health_check": FAST_CHECKS, "access_log": "off", **overrides})
    return IngressConfig.model_validate(data)


@dataclass
class IngressProcess:
    """A running `corral ingress --config <file>`."""

    process: ManagedProcess
    config_path: Path
    config: IngressConfig

    @property
    def port(self) -> int:
        return self.config.address[1]

    @property
    def url(self) -> str:
        return f"http://{NODE_ADDRESS}:{self.port}"

    def output(self) -> str:
        """Everything the ingress printed, also after it stopped."""
        return self.process.log_path.read_text(errors="replace")

    def rewrite(self, config: IngressConfig) -> None:
        """Replace the file (as `corral up` does on a re-run) and signal a reload."""
        write_ingress_config(self.config_path, config)
        self.config = config
        self.process.signal(signal.SIGHUP)

    def stop(self) -> None:
        self.process.stop()


def start_ingress(directory: Path, config: IngressConfig) -> IngressProcess:
    """Write the file, run `corral ingress --config` on it, wait until it listens."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ingress.yml"
    write_ingress_config(path, config)
    process = ManagedProcess(
        corral_argv("ingress", "--config", str(path)), cwd=REPO_ROOT, name="corral-ingress"
    )
    ingress = IngressProcess(process, path, config)
    try:
        wait_until(
            lambda: port_open(ingress.port) or not process.alive(),
            timeout=30,
            what=f"corral ingress on {ingress.port}",
        )
        assert process.alive(), f"corral ingress exited:\n{ingress.output()}"
    except BaseException:
        ingress.stop()
        raise
    return ingress


@dataclass
class Echo:
    """What the test backend's /echo saw."""

    status: int
    backend: str
    headers: dict[str, list[str]]

    def values(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


def curl_echo(url: str, *args: str, source: str | None = None) -> Echo:
    """GET `url` with curl (Host FQDN, from `source` when given) and parse the backend's /echo."""
    argv = ["curl", "-sS", "--max-time", "20", "-H", f"Host: {FQDN}", "-w", "\n%{http_code}"]
    if source is not None:
        argv += ["--interface", source]
    done = subprocess.run([*argv, *args, url], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"curl failed: {done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    data = json.loads(body)
    headers: dict[str, list[str]] = {}
    for name, value in data["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return Echo(int(status), data["backend"], headers)
