"""Backup while a store owner is writing, wipe, restore: every key is back and the store opens."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.server.backup import BackupError, backup, read_manifest, restore
from corral.store.sqlite import SqliteStore
from tests.e2e.server.core_harness import start_server
from tests.support.net import wait_until
from tests.support.procs import ManagedProcess, corral_argv

# Owns the data directory like a server: puts /k/<i> in a loop and prints each revision.
WRITER = """
import asyncio, sys
from pathlib import Path
from corral.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore.open(Path(sys.argv[1]) / "store.db")
    print("ready", flush=True)
    i = 0
    while True:
        rev = await store.put(f"/k/{i:08d}", b"v%d" % i)
        print(rev, flush=True)
        i += 1

asyncio.run(main())
"""
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"


def printed_revisions(proc: ManagedProcess) -> list[int]:
    """Revisions the writer reported committed (complete lines only)."""
    lines = proc.output().split("\n")[:-1]
    return [int(line) for line in lines if line.isdigit()]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with a certificate file beside the store."""
    path = tmp_path / "data"
    (path / "tls").mkdir(parents=True)
    (path / "tls" / "cert.pem").write_bytes(CERT)
    (path / "tls" / "key.pem").write_bytes(b"private")
    (path / "tls" / "key.pem").chmod(0o600)
    return path


@pytest.fixture
def writer(data_dir: Path) -> Iterator[ManagedProcess]:
    """A process owning data_dir and writing keys continuously."""
    proc = ManagedProcess([sys.executable, "-c", WRITER, str(data_dir)], name="store-owner")
    try:
        wait_until(lambda: "ready" in proc.output(), what="the writer to open the store")
        yield proc
    finally:
        proc.stop()


def keys_in(data_dir: Path) -> tuple[list[str], int]:
    """All keys and the revision of the store in data_dir (opened and closed)."""

    async def read() -> tuple[list[str], int]:
        store = SqliteStore.open(data_dir / "store.db")
        try:
            kvs, rev = await store.range("/k/")
            return [kv.key for kv in kvs], rev
        finally:
            await store.close()

    return asyncio.run(read())


def test_backup_while_writing_then_wipe_and_restore(
    writer: ManagedProcess, data_dir: Path, tmp_path: Path
) -> None:
    """Keys committed before the backup are all restored, with the certificates, and nothing
    is half-written: the restored store holds exactly revisions 1..R of the manifest."""
    wait_until(lambda: len(printed_revisions(writer)) > 2000, what="2000 writes")
    before = max(printed_revisions(writer))
    info = backup(data_dir, tmp_path / "backups" / "corral.tar.gz")
    assert writer.alive(), "the backup must not disturb the running owner"
    wait_until(lambda: max(printed_revisions(writer)) > info.store_revision, what="more writes")
    writer.stop()

    assert info.store_revision >= before
    assert {f.path for f in info.files} == {"store.db", "tls/cert.pem", "tls/key.pem"}
    manifest = read_manifest(info.archive)
    assert manifest.store_revision == info.store_revision
    assert info.archive.stat().st_mode & 0o777 == 0o600

    shutil.rmtree(data_dir)
    restored = restore(info.archive, data_dir)
    assert restored.moved_aside is None
    keys, revision = keys_in(data_dir)
    assert revision == info.store_revision
    assert keys == [f"/k/{i:08d}" for i in range(info.store_revision)]
    assert (data_dir / "tls" / "cert.pem").read_bytes() == CERT
    assert (data_dir / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600


def test_restore_refuses_a_directory_a_server_holds(
    writer: ManagedProcess, data_dir: Path, tmp_path: Path
) -> None:
    """Restoring over a running server's data directory fails and names its pid."""
    info = backup(data_dir, tmp_path / "b.tar.gz")
    with pytest.raises(BackupError, match=f"in use by a running corral server \\(pid {writer.pid}"):
        restore(info.archive, data_dir, force=True)
    assert writer.alive()


def test_restore_into_non_empty_dir_needs_force_and_moves_old_aside(
    data_dir: Path, tmp_path: Path
) -> None:
    """Without --force a non-empty dir is refused; with it the old content is kept aside."""
    info = backup(data_dir, tmp_path / "b.tar.gz")
    (data_dir / "tls" / "cert.pem").write_bytes(b"changed")
    with pytest.raises(BackupError, match=r"not empty.*--force"):
        restore(info.archive, data_dir)
    restored = restore(info.archive, data_dir, force=True)
    assert restored.moved_aside is not None
    assert restored.moved_aside.name.startswith("data.before-restore-")
    assert (restored.moved_aside / "tls" / "cert.pem").read_bytes() == b"changed"
    assert (data_dir / "tls" / "cert.pem").read_bytes() == CERT


def test_tampered_archive_is_refused_before_anything_changes(
    data_dir: Path, tmp_path: Path
) -> None:
    """A file that does not match its manifest checksum stops the restore; the target is
    left untouched."""
    info = backup(data_dir, tmp_path / "b.tar.gz")
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(info.archive) as source, tarfile.open(tampered, "w:gz") as target:
        for member in source:
            data = source.extractfile(member)
            assert data is not None
            content = data.read()
            if member.name == "data/tls/cert.pem":
                content = content.replace(b"MIIB", b"EVIL")
            member.size = len(content)
            target.addfile(member, io.BytesIO(content))
    fresh = tmp_path / "fresh"
    with pytest.raises(BackupError, match=r"tls/cert\.pem does not match its manifest checksum"):
        restore(tampered, fresh)
    assert not fresh.exists() or not any(fresh.iterdir())
    assert [p.name for p in tmp_path.iterdir() if ".restore-" in p.name] == []


def test_backup_errors_are_clear(tmp_path: Path, data_dir: Path) -> None:
    """A missing data dir, an archive inside the data dir and a non-backup file are refused."""
    with pytest.raises(BackupError, match="does not exist; check --data-dir"):
        backup(tmp_path / "nope", tmp_path / "b.tar.gz")
    with pytest.raises(BackupError, match="inside the data directory"):
        backup(data_dir, data_dir / "b.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(BackupError, match="is not a corral backup"):
        restore(junk, tmp_path / "fresh")


def test_manifest_lists_version_time_revision_and_checksums(
    data_dir: Path, tmp_path: Path
) -> None:
    """manifest.json is the archive's first entry and describes every file."""
    info = backup(data_dir, tmp_path / "b.tar.gz")
    with tarfile.open(info.archive) as tar:
        first = tar.next()
        assert first is not None and first.name == "manifest.json"
        handle = tar.extractfile(first)
        assert handle is not None
        manifest = json.loads(handle.read())
    assert manifest["corralVersion"] and manifest["created"].endswith("Z")
    assert manifest["storeRevision"] == 0
    assert [f["path"] for f in manifest["files"]] == ["tls/cert.pem", "tls/key.pem"]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])


def run_corral(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `corral` command to completion."""
    return subprocess.run(corral_argv(*args), capture_output=True, text=True, timeout=60)


def test_cli_round_trip_with_a_running_server(tmp_path: Path) -> None:
    """`corral server backup` of a running server, wipe, `corral server restore`, restart:
    the same CA, the old token still works and a changed setting is back."""
    base = tmp_path / "srv"
    server = start_server(base)
    archive = tmp_path / "backups" / "corral.tar.gz"
    data_dir = str(server.data_dir)
    try:
        token = server.login_token()
        headers = {"X-Forwarded-Proto": "https", "Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.http_url, headers=headers, timeout=10) as client:
            assert client.put("/v3/settings/ui-pl", json={"value": "Ranch"}).is_success
        ca_before = server.ca_path.read_text()
        made = run_corral("server", "backup", "--data-dir", data_dir, "--out", str(archive))
        assert made.returncode == 0, made.stderr
        refused = run_corral(
            "server", "restore", "--data-dir", data_dir, "--from", str(archive), "--force"
        )
        assert refused.returncode != 0
        assert "in use by a running corral server" in refused.stderr
    finally:
        server.stop()
    shutil.rmtree(server.data_dir)
    restored = run_corral("server", "restore", "--data-dir", data_dir, "--from", str(archive))
    assert restored.returncode == 0, restored.stderr
    again = start_server(base, data_dir=server.data_dir)
    try:
        assert again.ca_path.read_text() == ca_before
        with httpx.Client(base_url=again.http_url, headers=headers, timeout=10) as client:
            setting = client.get("/v3/settings/ui-pl")
        assert setting.status_code == 200 and setting.json()["value"] == "Ranch"
    finally:
        again.stop()
