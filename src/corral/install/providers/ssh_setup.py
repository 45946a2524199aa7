"""The SSH provider's first two steps on a node: the preflight checks (login, python3, the
facts of `node_ops facts`, the clock) and installing a release of the offline bundle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from corral.install import preflight as checks
from corral.install.bundle import Bundle
from corral.install.desired import NodeSpec
from corral.install.progress import Progress
from corral.install.providers.base import NodeProblem, ProviderError
from corral.install.ssh_connect import SshFailure

if TYPE_CHECKING:
    from corral.install.providers.ssh import SshProvider
    from corral.install.providers.ssh_link import Link

PYTHON_VERSION = "python3 -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'"
CLOCK_SAMPLES = 3
CLOCK_COMMAND = "python3 -c 'import time; print(repr(time.time()))'"
UPLOAD_BLOCK = 64 * 1024  # OpenSSH's sftp-server takes at most 256 KiB a request
UPLOAD_REQUESTS = 64


async def read_clock(link: Link) -> tuple[float, float, float]:
    """(sent, the node's clock, received) of the quickest of CLOCK_SAMPLES readings."""
    best: tuple[float, float, float] | None = None
    for _ in range(CLOCK_SAMPLES):
        sent = time.time()
        done = await link.conn.run(CLOCK_COMMAND, check=False)
        got = time.time()
        try:
            reading = (sent, float(str(done.stdout).strip()), got)
        except ValueError:
            continue
        if best is None or got - sent < best[2] - best[0]:
            best = reading
    if best is None:
        raise ProviderError("cannot read the node's clock")
    return best


async def check_node(
    provider: SshProvider, node: NodeSpec, bundle: Bundle, progress: Progress
) -> tuple[list[NodeProblem], tuple[float, float, float] | None]:
    """Node `node`'s problems, and its clock reading (None when it could not be checked)."""
    started = time.monotonic()
    try:
        link = await provider.link(node.name)
        version = await link.conn.run(PYTHON_VERSION, check=False)
        found = str(version.stdout or "") + str(version.stderr or "")
        problem = checks.python_problem(node.name, found, version.exit_status)
        if problem is not None:
            return [problem], None
        args = {"paths": list(checks.INSTALL_DIRS), "root": checks.DATA_DIR,
                "ports": [[a, p] for a, p, _ in checks.node_ports(node)],
                "release": bundle.release}
        facts = await provider.op(node.name, "facts", args)
        reading = await read_clock(link)
    except SshFailure as exc:
        return [NodeProblem(node.name, exc.message, exc.fix)], None
    except (ProviderError, OSError, asyncssh.Error) as exc:
        return [NodeProblem(node.name, f"the checks could not run: {exc}",
                            "check that the node's python3 and sftp work over SSH")], None
    link.facts = facts
    problems = checks.fact_problems(node, facts, bundle.python, bundle.registry)
    if not problems:
        python = ".".join(str(p) for p in facts["python"])
        services = "systemd" if facts.get("systemd") else "no systemd: a supervisor process"
        progress.info(f"node [{node.name}] ({node.user}@{node.address}:{node.port}): "
                      f"python {python}, {services}, ports and disk ok "
                      f"({time.monotonic() - started:.1f}s)", "preflight")
    return problems, reading


async def install_release(
    provider: SshProvider, name: str, bundle: Bundle, progress: Progress
) -> None:
    """Ship the bundle's files to node `name` and install the release there (nothing when
    the preflight found it installed)."""
    link = await provider.link(name)
    if link.facts.get("installed"):
        return
    started = time.monotonic()
    files = bundle.files if not bundle.registry else (bundle.pip_wheel, *[
        f for f in bundle.files if f.startswith("bin/")])
    size = sum((bundle.directory / f).stat().st_size for f in files)
    progress.info(f"Shipping the bundle to node [{name}] ({size / 1e6:.0f} MB over SFTP)",
                  "bundle")
    for directory in sorted({str(Path(bundle.release) / f).rpartition("/")[0]
                             for f in files}):
        await link.sftp.makedirs(directory, exist_ok=True)
    for relative in files:
        await link.sftp.put(str(bundle.directory / relative), f"{bundle.release}/{relative}",
                            block_size=UPLOAD_BLOCK, max_requests=UPLOAD_REQUESTS)
    source = "the private registry" if bundle.registry else "the shipped wheels"
    progress.info(f"Installing {bundle.requirement} on node [{name}] from {source}",
                  "bundle")
    result = await provider.op(name, "install", {
        "release": bundle.release, "requirement": bundle.requirement,
        "pip_wheel": f"{bundle.release}/{bundle.pip_wheel}", "registry": bundle.registry,
    })
    if not result.get("ok"):
        raise ProviderError(
            f"node [{name}]: installing {bundle.requirement} failed at {result.get('step')}:"
            f"\n{result.get('log', '')}\nfix: see the output above; with "
            "`private_registries`, check that the index has corral and its packages")
    link.facts["installed"] = True
    progress.info(f"{bundle.requirement} installed on node [{name}] in {bundle.release} "
                  f"({time.monotonic() - started:.1f}s)", "bundle")
