"""A cluster built by the real `corral up` for the end-to-end tests, and ways to reach it.

Each cluster file puts three all-role nodes on 127.0.<N>.1-3 (N random in 160-239, so other
tests' 127.x addresses do not collide) and the external corral lb on free ports of 127.0.0.1,
with `localhost` as the FQDN (resolved by /etc/hosts; nothing leaves this machine). The servers
run with AUDIT_LEVEL=1, so a test can read what headers reached them. `Cluster.remove()` runs
`corral remove` and then checks that no process of the cluster is left.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from tests.support.net import free_port, wait_until

FQDN = "localhost"
UP_TIMEOUT_S = 180.0
NODE_DIR_ENV = "CORRAL_NODE_DIR"

CLUSTER_FILE = """\
cluster_name: e2e-{third}
provider: local
nodes:
  - address: 127.0.{third}.1
    hostname_override: node-1
    role: [controlplane, etcd, worker]
  - address: 127.0.{third}.2
    hostname_override: node-2
    role: [controlplane, etcd, worker]
  - address: 127.0.{third}.3
    hostname_override: node-3
    role: [controlplane, etcd, worker]
load_balancer:
  listen: 127.0.0.1:{https_port}
  http_listen: 127.0.0.1:{http_port}
  tls:
    generate: true
addons: |-
  ---
  apiVersion: v1
  kind: Service
  metadata:
    namespace: cattle-system
    name: cattle-service
    labels:
      app: cattle
  spec:
    ports:
    - port: 80
      targetPort: 80
      protocol: TCP
      name: http
    selector:
      app: cattle
  ---
  apiVersion: extensions/v1beta1
  kind: Ingress
  metadata:
    namespace: cattle-system
    name: cattle-ingress-http
    annotations:
      nginx.ingress.kubernetes.io/proxy-connect-timeout: "30"
      nginx.ingress.kubernetes.io/proxy-read-timeout: "1800"
      nginx.ingress.kubernetes.io/proxy-send-timeout: "1800"
      nginx.ingress.kubernetes.io/ssl-redirect: "false"
  spec:
    rules:
    - host: {fqdn}
      http:
        paths:
        - backend:
            serviceName: cattle-service
            servicePort: 80
  ---
  kind: Deployment
  apiVersion: extensions/v1beta1
  metadata:
    namespace: cattle-system
    name: cattle
  spec:
    replicas: 1
    template:
      metadata:
        labels:
          app: cattle
      spec:
        containers:
        - image: rancher/rancher:latest
          name: cattle-server
          env:
          - name: AUDIT_LEVEL
            value: "1"
          ports:
          - containerPort: 80
            protocol: TCP
"""


def corral(*args: str) -> list[str]:
    """argv of the `corral` command from this interpreter."""
    return [sys.executable, "-m", "corral.cli.main", *args]


@dataclass
class Cluster:
    """One cluster file in `directory` and what `corral up` made of it."""

    directory: Path
    third: int
    https_port: int
    http_port: int
    stem: str = "rancher-cluster"
    first_output: str = ""  # what the first `corral up` printed

    @property
    def config(self) -> Path:
        return self.directory / f"{self.stem}.yml"

    @property
    def base(self) -> Path:
        return self.directory / f"{self.stem}.corral"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / f"kube_config_{self.stem}.yml"

    @property
    def state(self) -> Path:
        return self.directory / f"{self.stem}.corralstate"

    @property
    def url(self) -> str:
        return f"https://{FQDN}:{self.https_port}"

    def node_dir(self, name: str) -> Path:
        return self.base / "nodes" / name

    def address(self, index: int) -> str:
        return f"127.0.{self.third}.{index}"

    def up(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run `corral up --config <file>` to its end."""
        return subprocess.run(corral("up", "--config", str(self.config), *args),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def remove(self) -> subprocess.CompletedProcess[str]:
        """`corral remove --force`, then fail if any process of the cluster is left."""
        done = subprocess.run(corral("remove", "--config", str(self.config), "--force"),
                              capture_output=True, text=True, timeout=120, check=False)
        left = self.processes()
        if left:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"processes left after corral remove: {left}\n{done.stdout}")
        return done

    def processes(self, node: str | None = None) -> list[int]:
        """Live processes of the cluster (or of one node): supervisors and services."""
        root = str(self.node_dir(node)) if node else str(self.base)
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                value = proc.environ().get(NODE_DIR_ENV, "")
                cmdline = " ".join(proc.cmdline())
            except (psutil.Error, OSError):
                continue
            if value.startswith(root) or ("supervise" in cmdline and root in cmdline):
                found.append(proc.pid)
        return found

    def ca_pem(self) -> str:
        """The CA data of the kubeconfig (the cluster CA that issued the lb's certificate)."""
        data = yaml.safe_load(self.kubeconfig.read_text())
        cluster = data["clusters"][0]["cluster"]
        return base64.b64decode(cluster["certificate-authority-data"]).decode()

    def token(self) -> str:
        """The admin token of the kubeconfig."""
        return str(yaml.safe_load(self.kubeconfig.read_text())["users"][0]["user"]["token"])

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem())

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTPS client of the lb trusting the cluster CA (localhost → 127.0.0.1)."""
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=10,
                            **kwargs)  # type: ignore[arg-type]

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl with the cluster's kubeconfig."""
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=30, check=False)

    def node_status(self) -> dict[str, tuple[str, str]]:
        """NAME → (STATUS, ROLES) from `kubectl get nodes`."""
        done = self.kubectl("get", "nodes", "--no-headers")
        rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
        return {row[0]: (row[1], row[2]) for row in rows if len(row) >= 3}

    def kill_node(self, name: str) -> list[int]:
        """kill -9 every process of node `name` (supervisor and services) at once."""
        pids = self.processes(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.processes(name), timeout=10, what=f"{name} gone")
        return pids


def new_cluster(directory: Path, third: int | None = None) -> Cluster:
    """Write a cluster file for three local nodes and a local lb on free ports."""
    directory.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(directory, third or random.randrange(160, 240), free_port(), free_port())
    cluster.config.write_text(CLUSTER_FILE.format(
        third=cluster.third, https_port=cluster.https_port, http_port=cluster.http_port,
        fqdn=FQDN,
    ))
    return cluster


def up_or_fail(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """`corral up`, failing the test with its output (and removing the cluster) if it fails."""
    started = time.monotonic()
    done = cluster.up()
    if done.returncode != 0:
        cluster.remove()
        raise AssertionError(f"corral up failed after {time.monotonic() - started:.1f}s:\n"
                             f"{done.stdout}\n{done.stderr}")
    cluster.first_output = cluster.first_output or done.stdout
    return done
