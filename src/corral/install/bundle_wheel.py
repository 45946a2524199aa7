"""Corral's own wheel, written from the package as it is installed on this machine (an
editable install of a source tree included), without a build backend or a network: the
`corral` package's files, and the installed distribution's METADATA and entry points.

Deterministic: the same files give the same bytes (sorted entries, fixed timestamps), so a
bundle's digest changes exactly when Corral's code does.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import tempfile
import zipfile
from pathlib import Path

import corral

DIST_NAME = "corral"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
WHEEL_TEXT = "Wheel-Version: 1.0\nGenerator: corral\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def package_files() -> list[tuple[str, Path]]:
    """(path inside the wheel, file) for every file of the installed `corral` package."""
    root = Path(corral.__file__).resolve().parent
    found: list[tuple[str, Path]] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            if name.endswith(SKIPPED_SUFFIXES):
                continue
            path = Path(directory) / name
            found.append((f"corral/{path.relative_to(root).as_posix()}", path))
    return found


def _metadata() -> tuple[str, str, str]:
    """(version, METADATA, entry_points.txt) of the installed distribution."""
    dist = importlib.metadata.distribution(DIST_NAME)
    return dist.version, dist.read_text("METADATA") or "", dist.read_text("entry_points.txt") or ""


def wheel_name() -> str:
    """`corral-<version>-py3-none-any.whl`."""
    return f"{DIST_NAME}-{_metadata()[0]}-py3-none-any.whl"


def source_digest() -> str:
    """sha256 over every file of the package and the distribution's metadata."""
    digest = hashlib.sha256()
    version, metadata, entry_points = _metadata()
    for part in (version, metadata, entry_points):
        digest.update(part.encode() + b"\0")
    for name, path in package_files():
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _record_hash(data: bytes) -> str:
    raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={raw}"


def _entry(archive: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> str:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)
    return f"{name},{_record_hash(data)},{len(data)}"


def build_wheel(directory: Path) -> Path:
    """Write Corral's wheel into `directory` (atomically); its path."""
    version, metadata, entry_points = _metadata()
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    target = directory / wheel_name()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corral-wheel.", dir=directory)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            record = [_entry(archive, name, path.read_bytes()) for name, path in package_files()]
            record.append(_entry(archive, f"{dist_info}/METADATA", metadata.encode()))
            record.append(_entry(archive, f"{dist_info}/WHEEL", WHEEL_TEXT.encode()))
            if entry_points:
                record.append(_entry(archive, f"{dist_info}/entry_points.txt",
                                     entry_points.encode()))
            record.append(f"{dist_info}/RECORD,,")
            _entry(archive, f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
