"""The offline bundle the SSH provider ships to every node, so that nothing is downloaded there.

A bundle is a directory (built once, cached by its digest):

    wheels/      corral's wheel (from this machine's installed package), the wheels of every
                 package it needs at the versions installed here (`pip download`, cached), and
                 pip's own wheel (the nodes run pip from it: no ensurepip needed there)
    bin/         etcd and etcdctl, this machine's
    bundle.json  the digest, the requirement (`corral==<version>`), python and platform

On a node it becomes a release, `/opt/corral/releases/<digest>/`: the same files and a venv
(`python3 -m venv --without-pip`, then pip from the shipped wheel with `--no-index`). With
`private_registries` in the cluster file the nodes install corral and its packages from that
package index instead, and the bundle holds only pip's wheel and the etcd binaries.

`CORRAL_BUNDLE=<directory>` ships a bundle built elsewhere (say, on a machine that can download
wheels) exactly as it is; `CORRAL_BUNDLE_CACHE` moves the cache (default ~/.cache/corral).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from corral.install import bundle_wheel

BUNDLE_ENV = "CORRAL_BUNDLE"
CACHE_ENV = "CORRAL_BUNDLE_CACHE"
ETCD_BINARIES = (Path("/usr/bin/etcd"), Path("/usr/bin/etcdctl"))
PREFIX = "/opt/corral"  # where releases go on the nodes (fixed, like RKE's /opt/rke)
RELEASES = f"{PREFIX}/releases"
MANIFEST = "bundle.json"
DOWNLOAD_TIMEOUT_S = 600.0
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class BundleError(Exception):
    """The bundle cannot be built or read; the message says what is missing and the fix."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built bundle: where it is, what it installs, and what identifies it on the nodes."""

    directory: Path
    digest: str
    requirement: str  # corral==<version>
    pip_wheel: str  # pip's wheel, relative to `directory`
    registry: str  # the package index the nodes install from; "" = the shipped wheels
    python: str  # "3.11": the python the wheels are for
    files: tuple[str, ...]  # every file to ship, relative to `directory`

    @property
    def release(self) -> str:
        """The release directory on the nodes."""
        return f"{RELEASES}/{self.digest}"

    @property
    def size(self) -> int:
        """Bytes to ship."""
        return sum((self.directory / f).stat().st_size for f in self.files)

    def to_json(self) -> dict[str, object]:
        """bundle.json."""
        return {"digest": self.digest, "requirement": self.requirement,
                "pipWheel": self.pip_wheel, "registry": self.registry, "python": self.python,
                "files": list(self.files)}


def cache_dir() -> Path:
    """$CORRAL_BUNDLE_CACHE, else $XDG_CACHE_HOME/corral, else ~/.cache/corral."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "corral"


def normalize(name: str) -> str:
    """A distribution name as wheel file names spell it (PEP 427/503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def runtime_closure(root: str = bundle_wheel.DIST_NAME) -> dict[str, str]:
    """Every installed distribution `root` needs at run time (not its extras), name → the
    version installed here; `root` itself excluded."""
    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or python
        key = normalize(dist.metadata["Name"])
        if key in found:
            continue
        found[key] = dist.version
        for requirement in dist.requires or []:
            _, _, marker = requirement.partition(";")
            match = _NAME.match(requirement)
            if match and "extra" not in marker:
                todo.append(match.group(1))
    found.pop(normalize(root), None)
    return found


def cached_wheel(directory: Path, name: str, version: str) -> Path | None:
    """A wheel of name==version in `directory`, if there is one."""
    prefix = f"{normalize(name)}-{version}-"
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.whl")):
        if path.name.lower().startswith(prefix) or normalize(path.name).startswith(prefix):
            return path
    return None


def download_wheels(directory: Path, wanted: dict[str, str]) -> dict[str, Path]:
    """name → wheel for every name==version of `wanted`: from the cache, the missing ones
    with `pip download` (this machine's pip and its index configuration)."""
    missing = {n: v for n, v in wanted.items() if cached_wheel(directory, n, v) is None}
    if missing:
        directory.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "-q", "-d", str(directory),
                *(f"{n}=={v}" for n, v in sorted(missing.items()))]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=DOWNLOAD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BundleError(f"pip download did not finish: {exc}") from None
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).splitlines()[-8:])
            raise BundleError(
                f"pip download of {', '.join(sorted(missing))} failed:\n{tail}\n"
                f"fix: put those wheels in {directory}, or build the bundle on a machine that "
                f"can download them and set {BUNDLE_ENV} to its directory"
            )
    found: dict[str, Path] = {}
    for name, version in wanted.items():
        path = cached_wheel(directory, name, version)
        if path is None:
            raise BundleError(f"no wheel of {name}=={version} in {directory} after pip download")
        found[name] = path
    return found


def file_digest(path: Path) -> str:
    """sha256 of a file, cached beside the bundles by (path, size, mtime)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = cache_dir() / "digests" / key
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(digest.hexdigest())
    return digest.hexdigest()


def _corral_wheel(cache: Path) -> Path:
    """Corral's wheel, built once per content of the installed package."""
    directory = cache / "corral" / bundle_wheel.source_digest()[:24]
    path = directory / bundle_wheel.wheel_name()
    return path if path.is_file() else bundle_wheel.build_wheel(directory)


def _pip() -> tuple[str, str]:
    return "pip", importlib.metadata.version("pip")


def build_bundle(registry: str = "") -> Bundle:
    """The bundle for this machine's Corral (cached), or the one $CORRAL_BUNDLE names."""
    if os.environ.get(BUNDLE_ENV):
        return load_bundle(Path(os.environ[BUNDLE_ENV]))
    cache = cache_dir()
    version = importlib.metadata.version(bundle_wheel.DIST_NAME)
    requirement = f"{bundle_wheel.DIST_NAME}=={version}"
    pip_name, pip_version = _pip()
    wanted = {pip_name: pip_version} if registry else {**runtime_closure(),
                                                       pip_name: pip_version}
    wheels = download_wheels(cache / "wheels", wanted)
    if not registry:
        wheels[bundle_wheel.DIST_NAME] = _corral_wheel(cache)
    for binary in ETCD_BINARIES:
        if not binary.is_file():
            raise BundleError(f"{binary} is missing on this machine: install etcd "
                              "(Debian: apt-get install etcd-server etcd-client)")
    parts = sorted((f"wheels/{p.name}", file_digest(p)) for p in wheels.values())
    parts += [(f"bin/{b.name}", file_digest(b)) for b in ETCD_BINARIES]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    identity = json.dumps([parts, registry, requirement, sorted(runtime_closure().items()),
                           python, sysconfig.get_platform()])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    bundle = Bundle(cache / "bundles" / digest, digest, requirement,
                    f"wheels/{wheels[pip_name].name}", registry, python,
                    tuple(name for name, _ in parts))
    if not (bundle.directory / MANIFEST).is_file():
        sources = {f"wheels/{p.name}": p for p in wheels.values()}
        sources.update({f"bin/{b.name}": b for b in ETCD_BINARIES})
        _assemble(bundle, sources)
    return bundle


def _assemble(bundle: Bundle, sources: dict[str, Path]) -> None:
    tmp = bundle.directory.with_name(f".{bundle.digest}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for relative in bundle.files:
        source = sources[relative]
        target = tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (tmp / MANIFEST).write_text(json.dumps(bundle.to_json(), indent=2) + "\n")
    shutil.rmtree(bundle.directory, ignore_errors=True)
    os.replace(tmp, bundle.directory)


def load_bundle(directory: Path) -> Bundle:
    """A bundle directory built earlier (its bundle.json)."""
    try:
        data = json.loads((directory / MANIFEST).read_text())
        bundle = Bundle(directory, str(data["digest"]), str(data["requirement"]),
                        str(data["pipWheel"]), str(data.get("registry", "")),
                        str(data.get("python", "")),
                        tuple(str(f) for f in data["files"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{directory} is not a corral bundle ({exc}): unset {BUNDLE_ENV}, "
                          "or point it at a directory corral built") from None
    missing = [f for f in bundle.files if not (directory / f).is_file()]
    if missing:
        raise BundleError(f"the bundle {directory} lacks {', '.join(missing)}: build it again")
    return bundle
