"""When the mypyc-compiled hot path is used: the stamp check, the interface digest of imported
modules, the import closure the build records, and the fallback when a build does not load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from corral import _native
from corral._native import SHARED_LIB, Status, check, digest, interface_digest, load
from corral._native_build import closure

MODULES = ("pkg.hot",)
HOT = b'"""Hot."""\n\ndef f(x: int) -> int:\n    return x + 1\n'
DEP = b'"""Dep."""\n\nLIMIT = 4\n\n\nclass C:\n    def g(self, y: str) -> str:\n        return y\n'


def fake_build(tmp_path: Path, *, modules: tuple[str, ...] = MODULES) -> tuple[Path, Path]:
    """A source tree (pkg/hot.py compiled, pkg/dep.py imported) and a build stamped from it,
    with empty files where the extensions would be; (native root, source root)."""
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "hot.py").write_bytes(HOT)
    (source / "pkg" / "dep.py").write_bytes(DEP)
    native = tmp_path / ".native"
    build = native / _native.abi_tag() / "builds" / "b1"
    build.mkdir(parents=True)
    files = {name: f"{name}.so" for name in [*modules, SHARED_LIB]}
    for file in files.values():
        (build / file).write_bytes(b"")
    stamp = {
        "abi": _native.abi_tag(),
        "build": "b1",
        "modules": list(modules),
        "files": files,
        "sources": {
            "pkg/hot.py": {"sha256": digest(HOT), "interface": None},
            "pkg/dep.py": {"sha256": digest(DEP), "interface": interface_digest(DEP)},
        },
    }
    (build / "stamp.json").write_text(json.dumps(stamp))
    (native / _native.abi_tag() / "current").symlink_to(Path("builds", "b1"))
    return native, source


def test_a_build_of_the_current_sources_is_used(tmp_path: Path) -> None:
    """Stamp and sources agree: compiled, each module mapped to its extension file."""
    native, source = fake_build(tmp_path)
    status = check(native, source, MODULES, environ={})
    assert status.compiled, status.reason
    assert status.modules["pkg.hot"].name == "pkg.hot.so"
    assert status.describe().startswith("hot path compiled with mypyc")


def test_the_environment_switch_forces_pure_python(tmp_path: Path) -> None:
    """CORRAL_PURE_PYTHON=1 wins over a good build (and 0 does not)."""
    native, source = fake_build(tmp_path)
    status = check(native, source, MODULES, environ={"CORRAL_PURE_PYTHON": "1"})
    assert not status.compiled
    assert status.describe() == "hot path in pure Python: CORRAL_PURE_PYTHON=1"
    assert check(native, source, MODULES, environ={"CORRAL_PURE_PYTHON": "0"}).compiled


def test_no_build_means_pure_python(tmp_path: Path) -> None:
    """Without a build the reason says how to make one."""
    status = check(tmp_path / ".native", tmp_path, MODULES, environ={})
    assert not status.compiled
    assert "no compiled build (run scripts/build-native)" in status.reason


def test_an_edited_compiled_module_makes_the_build_stale(tmp_path: Path) -> None:
    """One changed byte in a compiled module: pure Python, naming the file."""
    native, source = fake_build(tmp_path)
    (source / "pkg" / "hot.py").write_bytes(HOT.replace(b"x + 1", b"x + 2"))
    status = check(native, source, MODULES, environ={})
    assert not status.compiled
    assert "stale: src/pkg/hot.py changed;" in status.reason


def test_an_imported_module_matters_only_by_its_interface(tmp_path: Path) -> None:
    """A function body edited in an imported module keeps the build; a signature does not."""
    native, source = fake_build(tmp_path)
    dep = source / "pkg" / "dep.py"
    dep.write_bytes(DEP.replace(b"return y", b"# reworded\n        return y + ''"))
    assert check(native, source, MODULES, environ={}).compiled
    dep.write_bytes(DEP.replace(b"y: str", b"y: bytes"))
    status = check(native, source, MODULES, environ={})
    assert not status.compiled
    assert "stale: src/pkg/dep.py changed its interface" in status.reason


def test_a_changed_module_list_or_a_missing_file_makes_the_build_stale(tmp_path: Path) -> None:
    """The stamp must list exactly the modules asked for, and every file must be there."""
    native, source = fake_build(tmp_path)
    status = check(native, source, ("pkg.hot", "pkg.dep"), environ={})
    assert "the list of compiled modules changed" in status.reason
    (source / "pkg" / "dep.py").unlink()
    assert "src/pkg/dep.py is gone" in check(native, source, MODULES, environ={}).reason


def test_interface_digest_ignores_bodies_docstrings_and_layout() -> None:
    """Comments, docstrings, blank lines and function bodies do not count; constants,
    annotations, signatures and attribute assignments do."""
    base = interface_digest(DEP)
    same = (
        b'"""Other words."""\n# note\nLIMIT = 4\nclass C:\n    def g(self, y: str) -> str:\n'
        b'        """Doc."""\n        z = y\n        return z\n'
    )
    assert interface_digest(same) == base
    for changed in (
        DEP.replace(b"LIMIT = 4", b"LIMIT = 5"),
        DEP.replace(b"-> str", b"-> bytes"),
        DEP.replace(b"class C:", b"class C(Exception):"),
        DEP.replace(b"return y", b"self.seen = y\n        return y"),
    ):
        assert interface_digest(changed) != base, changed


def test_a_build_that_does_not_load_leaves_pure_python(tmp_path: Path) -> None:
    """An extension file that is not one: the import hook is removed again and the status
    says the build did not load."""
    name = "corral_native_test_broken__mypyc"
    broken = tmp_path / f"{name}.so"
    broken.write_bytes(b"not an ELF file")
    hooks = list(sys.meta_path)
    status = load(Status(True, "build x", {name: broken}), shared_lib=name)
    assert not status.compiled
    assert "did not load" in status.reason
    assert sys.meta_path == hooks
    assert name not in sys.modules


def test_the_build_reads_the_hot_path_and_what_it_imports() -> None:
    """The closure of the compiled modules holds them and the modules they import (the
    HTTP/2 connection, the lb configuration), and nothing the proxy does not import."""
    root = Path(_native.__file__).resolve().parent.parent
    relative = {str(p.relative_to(root)) for p in closure(_native.MODULES, root)}
    for name in _native.MODULES:
        assert name.replace(".", "/") + ".py" in relative
    assert {"corral/proxy/http2.py", "corral/config/lb.py", "corral/__init__.py"} <= relative
    assert not any(p.startswith(("corral/server/", "corral/install/")) for p in relative)


@pytest.mark.parametrize("name", _native.MODULES)
def test_every_listed_module_exists(name: str) -> None:
    """The module list names real source files (a typo would silently compile nothing)."""
    root = Path(_native.__file__).resolve().parent.parent
    assert (root / (name.replace(".", "/") + ".py")).is_file()
