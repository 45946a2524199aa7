"""The sqlite store loses nothing committed when its process is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store import DataDirLocked
from corral.store.sqlite import SqliteStore
from tests.support.net import wait_until
from tests.support.procs import ManagedProcess

# Puts keys forever, printing "<index> <revision>" after each put has returned.
WRITER = """
import asyncio, sys
from pathlib import Path
from corral.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore.open(Path(sys.argv[1]))
    print("ready", flush=True)
    i = 0
    while True:
        rev = await store.put(f"/d/{i:08d}", (b"%d;" % i) * 300)
        print(i, rev, flush=True)
        i += 1

asyncio.run(main())
"""


def committed(output: str) -> dict[int, int]:
    """index -> revision for every complete line the writer printed."""
    found: dict[int, int] = {}
    for line in output.split("\n")[:-1]:  # text after the last newline may be a partial line
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            found[int(parts[0])] = int(parts[1])
    return found


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A writer process putting keys into tmp_path/store.db in a loop."""
    proc = ManagedProcess(
        [sys.executable, "-c", WRITER, str(tmp_path / "store.db")], name="store-writer"
    )
    try:
        wait_until(lambda: proc.output().startswith("ready"), what="writer to open the store")
        yield proc
    finally:
        proc.stop()


def test_kill_9_mid_writes_loses_no_committed_revision(
    writer: ManagedProcess, tmp_path: Path
) -> None:
    """Every revision the writer printed before SIGKILL is in the reopened store."""
    wait_until(lambda: len(writer.output().splitlines()) > 3000, what="3000 committed writes")
    writer.kill()
    printed = committed(writer.output())
    assert len(printed) > 3000

    async def check() -> None:
        store = SqliteStore.open(tmp_path / "store.db")
        try:
            last = max(printed.values())
            assert await store.revision() >= last
            for index, rev in printed.items():
                kv = await store.get(f"/d/{index:08d}")
                assert kv is not None, f"key {index} (revision {rev}) lost"
                assert kv.mod_revision == rev
                assert kv.value == (b"%d;" % index) * 300
        finally:
            await store.close()

    asyncio.run(check())


def test_running_writer_holds_the_data_dir(writer: ManagedProcess, tmp_path: Path) -> None:
    """Opening the store of a running server fails and names that server's pid."""
    expected = f"in use by another corral server \\(pid {writer.pid}\\)"
    with pytest.raises(DataDirLocked, match=expected):
        SqliteStore.open(tmp_path / "store.db")
