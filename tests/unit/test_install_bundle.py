"""The offline bundle's parts: corral's own wheel (deterministic, installable metadata), the set
of packages it needs, the wheel cache, and reading a bundle directory back."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import zipfile
from pathlib import Path

import pytest

from corral.install import bundle_wheel
from corral.install.bundle import (
    MANIFEST,
    BundleError,
    cached_wheel,
    load_bundle,
    normalize,
    runtime_closure,
)


def test_the_wheel_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    """Built twice from the same files: identical (so the bundle digest only changes with
    the code)."""
    first = bundle_wheel.build_wheel(tmp_path / "a").read_bytes()
    second = bundle_wheel.build_wheel(tmp_path / "b").read_bytes()
    assert first == second


def test_the_wheel_holds_the_package_metadata_and_a_correct_record(tmp_path: Path) -> None:
    """corral/… files, METADATA with the pinned requirements, WHEEL py3-none-any, the entry
    point, and a RECORD whose hashes match every entry."""
    version = importlib.metadata.version("corral")
    path = bundle_wheel.build_wheel(tmp_path)
    assert path.name == f"corral-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert "corral/install/node_ops.py" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        info = f"corral-{version}.dist-info"
        assert "Requires-Dist: asyncssh==" in archive.read(f"{info}/METADATA").decode()
        assert "Tag: py3-none-any" in archive.read(f"{info}/WHEEL").decode()
        assert "corral = corral.cli.main:main" in archive.read(
            f"{info}/entry_points.txt").decode()
        for row in archive.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = row.split(",")
            if not digest:
                continue
            data = archive.read(name)
            raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={raw.decode()}" and int(size) == len(data), name


def test_the_runtime_closure_has_every_dependency_and_no_test_extra() -> None:
    """What corral needs at run time, transitively (cffi through cryptography), at the
    versions installed here; pytest (an extra) and corral itself are not in it."""
    closure = runtime_closure()
    for name in ("asyncssh", "cryptography", "grpcio"):
        assert closure[name] == importlib.metadata.version(name)
    assert "cffi" in closure and "pydantic_core" in closure
    assert "pytest" not in closure and "corral" not in closure


def test_names_are_normalized_as_wheel_files_spell_them() -> None:
    """PEP 503 names with - . _ in any mix become one lowercase underscore form."""
    assert normalize("Prometheus-Client") == normalize("prometheus_client") == "prometheus_client"
    assert normalize("typing.extensions") == "typing_extensions"


def test_a_cached_wheel_is_found_by_name_and_exact_version(tmp_path: Path) -> None:
    """pydantic_core-2.46.4-… matches pydantic-core==2.46.4, not 2.46.40 nor another name."""
    wheel = tmp_path / "pydantic_core-2.46.4-cp311-cp311-manylinux_2_17_x86_64.whl"
    wheel.write_bytes(b"")
    (tmp_path / "pydantic_core-2.46.40-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"")
    assert cached_wheel(tmp_path, "pydantic-core", "2.46.4") == wheel
    assert cached_wheel(tmp_path, "pydantic", "2.46.4") is None
    assert cached_wheel(tmp_path / "missing", "pydantic-core", "2.46.4") is None


def _bundle_dir(tmp_path: Path, files: list[str]) -> Path:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    manifest = {"digest": "abc", "requirement": "corral==0.1.0", "pipWheel": "wheels/pip.whl",
                "registry": "", "python": "3.11",
                "files": ["wheels/pip.whl", "bin/etcd"]}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    return tmp_path


def test_a_bundle_directory_reads_back_with_its_release_path(tmp_path: Path) -> None:
    """bundle.json → the digest, what to install and where on the nodes."""
    bundle = load_bundle(_bundle_dir(tmp_path, ["wheels/pip.whl", "bin/etcd"]))
    assert bundle.release == "/opt/corral/releases/abc"
    assert bundle.requirement == "corral==0.1.0" and bundle.size == 2


def test_a_bundle_missing_a_file_or_its_manifest_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A lost file or a directory that is no bundle: BundleError saying what to do."""
    with pytest.raises(BundleError, match="lacks bin/etcd: build it again"):
        load_bundle(_bundle_dir(tmp_path / "one", ["wheels/pip.whl"]))
    with pytest.raises(BundleError, match=r"is not a corral bundle.*unset CORRAL_BUNDLE"):
        load_bundle(tmp_path / "nothing")
