"""`scripts/build-native`: compile `corral._native.MODULES` with mypyc into `.native/`.

    python -m corral._native_build [--if-stale] [--quiet]

The sources the compiler reads — the listed modules and every module of `corral` they import,
directly or not (found by reading their `import` statements) — are copied to a work directory
first and hashed there, so the stamp describes exactly what was compiled even if someone edits
a file meanwhile. mypyc and the C compiler run in a child process whose output goes to
`.native/<ABI>/build.log`; the result becomes `.native/<ABI>/builds/<id>/` and the link
`.native/<ABI>/current` is switched to it in one rename (a process starting meanwhile sees the
old build or the new one, whole). The three newest builds are kept (a running lb may still
import from an older one). Any failure prints one warning line and exits 1; the pure-Python
modules stay in use (`corral._native.check` refuses a stale or missing build).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from corral._native import (
    GROUP,
    MODULES,
    NATIVE_ROOT,
    SHARED_LIB,
    SOURCE_ROOT,
    STAMP,
    abi_tag,
    build_dir,
    check,
    digest,
    interface_digest,
)

KEEP_BUILDS = 3
COMPILE_TIMEOUT_S = 600
OPT_LEVEL = "3"
PREFIX = "build-native:"
MYPY_CONFIG = "mypy-settings.toml"


def module_file(name: str, root: Path) -> Path | None:
    """The source of module `name` under `root` (a package's `__init__.py`), or None."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(name: str, path: Path) -> set[str]:
    """Every module name an import statement of `name`'s source mentions (relative imports
    resolved; `from a import b` counts as `a` and `a.b`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def closure(modules: Iterable[str], root: Path, top: str = "corral") -> list[Path]:
    """The source files of `modules` and of every `top` module they import, transitively
    (including imports only made for type checking: their types shape the compiled code)."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            continue
        seen[name] = path
        for mentioned in _imported(name, path):
            parts = mentioned.split(".")
            if parts[0] != top:
                continue
            # the packages on the way are imported too
            todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return sorted(set(seen.values()))


def _say(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


def _warn(reason: str) -> int:
    if check(environ={}).compiled:  # a build of these very sources is already in place
        _say(f"WARNING: this build failed ({reason}); the existing one matches the sources")
    else:
        _say(f"WARNING: the lb's hot path is not compiled ({reason}); corral lb runs pure Python")
    return 1


def _missing_tools() -> str | None:
    """Why a build cannot even start (no compiler, no Python headers, no mypyc), or None."""
    compiler = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler `{compiler}`: apt-get install gcc"
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.is_file():
        return f"no {include}: apt-get install python3-dev"
    for module in ("mypyc.build", "setuptools"):
        try:
            __import__(module)
        except ImportError:
            return f"`{module}` is not installed in this Python: run scripts/setup"
    return None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One build at a time per ABI (two engineers running setup at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _copy_sources(work: Path) -> dict[str, dict[str, str | None]]:
    """Copy the closure of MODULES into `work/src`; returns the stamp's record of each file:
    {relative path: {"sha256": of its bytes, "interface": None for a compiled module, else
    its `interface_digest`}}."""
    src = work / "src"
    compiled = {module_file(name, SOURCE_ROOT) for name in MODULES}
    sources: dict[str, dict[str, str | None]] = {}
    for path in closure(MODULES, SOURCE_ROOT):
        relative = path.relative_to(SOURCE_ROOT)
        target = src / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        data = target.read_bytes()
        interface = None if path in compiled else interface_digest(data)
        sources[str(relative)] = {"sha256": digest(data), "interface": interface}
    # mypy's settings (strict, the overrides); under another name, as setuptools would read
    # a pyproject.toml in its directory as the project's
    pyproject = SOURCE_ROOT.parent / "pyproject.toml"
    if pyproject.is_file():
        shutil.copyfile(pyproject, work / MYPY_CONFIG)
    return sources


def compile_in(work: Path) -> None:
    """The child's job: mypyc + the C compiler on `work/src`, extensions into `work/lib`."""
    os.chdir(work)
    # setuptools first: mypyc.build picks it over distutils only if it is imported already
    setuptools: Any = importlib.import_module("setuptools")
    from mypyc.build import mypycify

    compiled = [str(Path("src", *name.split(".")).with_suffix(".py")) for name in MODULES]
    # every copied file is a source, as in the project's own mypy run (which checks them in
    # the same order then); only the listed modules are compiled
    checked = sorted(str(path) for path in Path("src").rglob("*.py"))
    options = ["--cache-dir", str(work.parent / "mypy-cache")]
    if Path(MYPY_CONFIG).is_file():
        options += ["--config-file", MYPY_CONFIG]
    extensions = mypycify(
        [*options, *checked],
        only_compile_paths=compiled,
        opt_level=OPT_LEVEL,
        group_name=GROUP,
        target_dir="c",
    )
    jobs = str(max(1, len(os.sched_getaffinity(0))))
    setuptools.setup(
        name="corral-native",
        ext_modules=extensions,
        script_name="build-native",
        script_args=["build_ext", "--build-lib", "lib", "--build-temp", "tmp", "-j", jobs],
    )


def _extension_files(lib: Path) -> dict[str, str]:
    """{module name: path relative to `lib`} of what the build produced."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    files: dict[str, str] = {}
    for path in lib.rglob(f"*{suffix}"):
        relative = path.relative_to(lib)
        name = ".".join(relative.parts)[: -len(suffix)]
        files[name] = str(relative)
    return files


def _install(abi_root: Path, work: Path, sources: dict[str, dict[str, str | None]]) -> str:
    """Move the build into builds/<id>, write its stamp, point `current` at it; the id."""
    files = _extension_files(work / "lib")
    missing = [name for name in [*MODULES, SHARED_LIB] if name not in files]
    if missing:
        raise RuntimeError(f"the build produced no {', '.join(missing)}")
    stamp = {
        "abi": abi_tag(),
        "python": sys.version,
        "mypy": _mypy_version(),
        "modules": list(MODULES),
        "sources": sources,
        "files": files,
    }
    build_id = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]
    stamp["build"] = build_id
    builds = abi_root / "builds"
    target = builds / build_id
    if target.exists():
        shutil.rmtree(target)
    builds.mkdir(parents=True, exist_ok=True)
    (work / "lib").rename(target)
    (target / STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    link = abi_root / f"current.{os.getpid()}"
    link.symlink_to(Path("builds", build_id))
    os.replace(link, abi_root / "current")
    old = sorted(
        (p for p in builds.iterdir() if p.name != build_id), key=lambda p: p.stat().st_mtime
    )
    for stale in old[: max(0, len(old) - (KEEP_BUILDS - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return build_id


def _mypy_version() -> str:
    from mypy.version import __version__

    return str(__version__)


def build(*, if_stale: bool, quiet: bool) -> int:
    """Build (or, with `if_stale`, only when the current build does not match the sources);
    0 when a build of the current sources is in place, 1 (after one warning line) if not."""
    abi_root = build_dir(NATIVE_ROOT).parent
    with _locked(abi_root):
        if if_stale and check(environ={}).compiled:
            if not quiet:
                _say("the compiled hot path is up to date")
            return 0
        reason = _missing_tools()
        if reason is not None:
            return _warn(reason)
        work = abi_root / "work"
        shutil.rmtree(work, ignore_errors=True)  # the mypy cache is beside it, kept
        work.mkdir(parents=True)
        started = time.monotonic()
        _say(f"compiling the lb's hot path with mypyc ({len(MODULES)} modules) ...")
        sources = _copy_sources(work)
        log = abi_root / "build.log"
        argv = [sys.executable, "-m", "corral._native_build", "--compile-in", str(work)]
        try:
            with open(log, "wb") as out:
                done = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=COMPILE_TIMEOUT_S,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            return _warn(f"the compiler ran over {COMPILE_TIMEOUT_S} s; see {log}")
        if done.returncode != 0:
            return _warn(f"the compiler failed: {_last_error(log)}; see {log}")
        try:
            build_id = _install(abi_root, work, sources)
        except (OSError, RuntimeError) as exc:
            return _warn(f"installing the build failed: {exc}")
        _say(f"compiled in {time.monotonic() - started:.0f} s: build {build_id[:12]}")
        return 0


def _last_error(log: Path) -> str:
    """The most telling line of a failed build's log."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in lines:
        if ": error:" in line:
            return line
    return lines[-1] if lines else "no output"


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="scripts/build-native", description=__doc__)
    parser.add_argument("--if-stale", action="store_true", help="only if the sources changed")
    parser.add_argument("--quiet", action="store_true", help="say nothing when up to date")
    parser.add_argument("--compile-in", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.compile_in is not None:
        compile_in(options.compile_in)
        return 0
    return build(if_stale=options.if_stale, quiet=options.quiet)


if __name__ == "__main__":
    sys.exit(main())
