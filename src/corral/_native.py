"""The proxy's hot path compiled with mypyc: which modules, and whether the compiled build runs.

`scripts/build-native` (run by `scripts/setup`; the build is `corral._native_build`) compiles
the modules of `MODULES` into `.native/<python ABI>/` beside `src/` — never into the source
tree, so editing a `.py` there keeps working as before. `activate()`, called once when
`corral.proxy` is imported, uses the compiled modules only when the build came from exactly
the current sources: its stamp lists every file of `corral` the compiler read (the modules and
everything they import), with a SHA-256 each, and all of them must still match. Otherwise, and
when `CORRAL_PURE_PYTHON=1`, every module is the pure-Python one. Nothing here fails: whatever
goes wrong, Python's own modules run, and `describe()` says why (`corral lb` logs it once).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import sysconfig
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: this module is imported by every `corral.proxy` user
    import ast
    from collections.abc import Sequence
    from types import ModuleType

# The modules compiled with mypyc, in one place: the HTTP/1.1 path of a request and what it
# calls per request. A module added here must compile under mypyc (scripts/build-native prints
# what it refuses) and pass the test suite compiled; a test that patches a function or method
# of a compiled module no longer reaches the compiled callers (exchange_phase.observer shows
# the alternative: a hook the compiled code reads).
MODULES: tuple[str, ...] = (
    "corral.proxy.constants",
    "corral.proxy.exchange_phase",
    "corral.proxy.request_head",
    "corral.proxy.response_headers",
    "corral.proxy.forwarding",
    "corral.proxy.downstream",
    "corral.proxy.http1_writer",
    "corral.proxy.exchange",
    "corral.proxy.upstream_conn",
    "corral.proxy.http1",
    "corral.proxy.tls_transport",
    "corral.proxy.tls_listener",
    "corral.proxy.upstream",  # keep-alive pools and balancing: several calls per request
    "corral.proxy.routing",
    "corral.proxy.stats",
)
PURE_ENV = "CORRAL_PURE_PYTHON"  # "1": never use the compiled modules
GROUP = "corral_native"  # mypyc's shared library: `corral_native__mypyc`
SHARED_LIB = f"{GROUP}__mypyc"
STAMP = "stamp.json"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding `corral/`
NATIVE_ROOT = SOURCE_ROOT.parent / ".native"  # the build directory (in .gitignore)
BUILD_HINT = "run scripts/build-native"


def abi_tag() -> str:
    """This interpreter's extension-module ABI (a build for another one is never loaded)."""
    return str(sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag)


def build_dir(native_root: Path = NATIVE_ROOT) -> Path:
    """Where the current build for this interpreter is (a link to the newest build)."""
    return native_root / abi_tag() / "current"


def digest(data: bytes) -> str:
    """SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


def interface_digest(source: bytes) -> str:
    """SHA-256 of what compiled code can have taken from a module it imports without compiling
    it: every module-level and class-level statement (imports, assignments, annotations, class
    headers) and every function's signature and `self.<attribute>` assignments — not function
    bodies otherwise, nor docstrings, comments or line numbers. Editing inside a function of an
    imported module leaves it unchanged; changing a type, a signature or a constant does not."""
    import ast

    parts: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                parts.append(f"def {node.name}")
                parts.extend(ast.dump(x) for x in (*node.decorator_list, node.args))
                parts.append(ast.dump(node.returns) if node.returns else "-")
                parts.extend(
                    ast.dump(x)
                    for x in ast.walk(node)
                    if isinstance(x, ast.Assign | ast.AnnAssign | ast.AugAssign)
                    and any(isinstance(t, ast.Attribute) for t in _targets(x))
                )
            elif isinstance(node, ast.ClassDef):
                parts.append(f"class {node.name}")
                parts.extend(
                    ast.dump(x) for x in (*node.decorator_list, *node.bases, *node.keywords)
                )
                visit(node.body)
                parts.append("end")
            else:
                parts.append(ast.dump(node))

    visit(ast.parse(source).body)
    return digest("\n".join(parts).encode())


def _targets(node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> list[ast.expr]:
    import ast

    return node.targets if isinstance(node, ast.Assign) else [node.target]


def _changed(source_root: Path, relative: str, recorded: object) -> str | None:
    """How a source file differs from the build's record of it, or None if it does not
    matter: a compiled module must be byte for byte the same, a module it imports only the
    same in its interface (`interface_digest`)."""
    if not isinstance(recorded, dict):
        return "is not recorded properly"
    try:
        data = (source_root / relative).read_bytes()
    except OSError:
        return "is gone"
    if digest(data) == recorded.get("sha256"):
        return None
    interface = recorded.get("interface")
    if interface is None:
        return "changed"
    try:
        same = interface_digest(data) == interface
    except (SyntaxError, ValueError):
        same = False
    return None if same else "changed its interface (a signature, a type or a constant)"


class Status:
    """Whether the compiled modules are in use, and why (or why not)."""

    def __init__(self, compiled: bool, reason: str, modules: dict[str, Path] | None = None) -> None:
        self.compiled = compiled
        self.reason = reason
        self.modules = modules or {}  # module name -> extension file

    def describe(self) -> str:
        """One line for a log: which hot path runs."""
        if self.compiled:
            return f"hot path compiled with mypyc ({len(MODULES)} modules, {self.reason})"
        return f"hot path in pure Python: {self.reason}"


def check(
    native_root: Path = NATIVE_ROOT,
    source_root: Path = SOURCE_ROOT,
    modules: Sequence[str] = MODULES,
    environ: dict[str, str] | None = None,
) -> Status:
    """Whether a compiled build of exactly the current sources is there (reads files only)."""
    env = os.environ if environ is None else environ
    if env.get(PURE_ENV, "") not in ("", "0"):
        return Status(False, f"{PURE_ENV}={env[PURE_ENV]}")
    directory = build_dir(native_root).resolve()  # this build's files, even if relinked later
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except FileNotFoundError:
        return Status(False, f"no compiled build ({BUILD_HINT})")
    except (OSError, ValueError) as exc:
        return Status(False, f"the compiled build's stamp is unreadable ({exc}); {BUILD_HINT}")
    if not isinstance(stamp, dict) or stamp.get("abi") != abi_tag():
        return Status(False, f"the compiled build is for another Python; {BUILD_HINT}")
    if stamp.get("modules") != list(modules):
        return Status(False, f"the list of compiled modules changed; {BUILD_HINT}")
    sources = stamp.get("sources")
    files = stamp.get("files")
    if not isinstance(sources, dict) or not isinstance(files, dict):
        return Status(False, f"the compiled build's stamp is incomplete; {BUILD_HINT}")
    for relative, recorded in sorted(sources.items()):
        changed = _changed(source_root, relative, recorded)
        if changed is not None:
            where = f"{source_root.name}/{relative}"
            return Status(False, f"the compiled build is stale: {where} {changed}; {BUILD_HINT}")
    found: dict[str, Path] = {}
    for name in [*modules, SHARED_LIB]:
        path = directory / str(files.get(name, ""))
        if name not in files or not path.is_file():
            return Status(False, f"the compiled build lacks {name}; {BUILD_HINT}")
        found[name] = path
    return Status(True, f"build {str(stamp.get('build', '?'))[:12]}", found)


class _Finder:
    """Imports the listed modules from their compiled files (everything else as usual); a
    meta path finder (importlib.abc would cost 30 ms of imports for nothing)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        spec = ModuleSpec(fullname, ExtensionFileLoader(fullname, str(file)), origin=str(file))
        spec.has_location = True  # __file__ is the extension's path
        return spec

    def invalidate_caches(self) -> None:
        """Nothing cached (importlib.invalidate_caches calls this on every finder)."""


_status: Status | None = None


def load(status: Status, shared_lib: str = SHARED_LIB) -> Status:
    """Make the modules of a compiled `status` importable from their build; the status that
    holds afterwards (pure Python if the build's shared library does not load)."""
    if not status.compiled:
        return status
    finder = _Finder(status.modules)
    sys.meta_path.insert(0, finder)
    try:  # the shared library holds all the code: if it loads, the modules will
        importlib.import_module(shared_lib)
    except Exception as exc:
        sys.meta_path.remove(finder)
        sys.modules.pop(shared_lib, None)
        return Status(False, f"the compiled build did not load ({exc!r}); {BUILD_HINT}")
    return status


def activate() -> Status:
    """Once per process: use the compiled modules if `check` allows it (else change nothing)."""
    global _status
    if _status is None:
        _status = load(check())
    return _status


def describe() -> str:
    """Which hot path this process runs, as one log line."""
    return activate().describe()
