"""The audit file writer: rotation without loss, retention, and failures that never raise."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from corral.server.audit import AuditLog, AuditSettings
from corral.server.audit_record import RawBody, RawHeaders, render_line
from corral.server.audit_rotate import backup_name, list_backups, parse_backup


def all_lines(active: Path) -> list[dict[str, object]]:
    """Every record in the active file and its rotated files."""
    files = [active, *(b.path for b in list_backups(active))]
    lines: list[dict[str, object]] = []
    for path in files:
        if path.exists():
            lines.extend(json.loads(line) for line in path.read_text().splitlines())
    return lines


def test_rotation_under_many_threads_loses_no_record(tmp_path: Path) -> None:
    """8 threads x 1500 records through 4 KiB files: every record is in exactly one file."""
    log_path = tmp_path / "audit.log"
    log = AuditLog(AuditSettings(level=1, path=log_path, max_backups=0), rotate_bytes=4096)

    def writer(n: int) -> None:
        for i in range(1500):
            log.write({"writer": n, "seq": i, "pad": "x" * 40})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    stats = log.stats()
    records = all_lines(log_path)
    assert stats["written"] == 12_000 and stats["dropped"] == 0 and stats["errors"] == 0
    assert len(records) == 12_000
    assert {(r["writer"], r["seq"]) for r in records} == {
        (n, i) for n in range(8) for i in range(1500)
    }
    assert stats["rotations"] == len(list_backups(log_path)) > 50
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())


def test_rotated_names_keep_order_and_lines_stay_whole(tmp_path: Path) -> None:
    """Reading backups oldest-first then the active file gives the records in write order."""
    log_path = tmp_path / "audit.log"
    log = AuditLog(AuditSettings(level=1, path=log_path, max_backups=0), rotate_bytes=512)
    for i in range(400):
        log.write({"seq": i})
    log.close()
    files = [b.path for b in reversed(list_backups(log_path))] + [log_path]
    seqs = [json.loads(line)["seq"] for f in files for line in f.read_text().splitlines()]
    assert seqs == list(range(400))


def test_max_backups_prunes_oldest_rotated_files(tmp_path: Path) -> None:
    """With max_backups=3 only the three newest rotated files remain, plus the active one."""
    log_path = tmp_path / "audit.log"
    log = AuditLog(AuditSettings(level=1, path=log_path, max_backups=3), rotate_bytes=256)
    for i in range(300):
        log.write({"seq": i})
    log.close()
    backups = list_backups(log_path)
    assert log.stats()["rotations"] > 3
    assert len(backups) == 3
    newest_kept = [json.loads(b.path.read_text().splitlines()[-1])["seq"] for b in backups]
    assert newest_kept == sorted(newest_kept, reverse=True)
    assert json.loads(log_path.read_text().splitlines()[0])["seq"] > newest_kept[0]


def test_max_age_prunes_old_rotated_files(tmp_path: Path) -> None:
    """Rotated files older than max_age days go at the next rotation; younger ones stay."""
    log_path = tmp_path / "audit.log"
    now = datetime.now(UTC)
    old = backup_name(log_path, now - timedelta(days=11))
    young = backup_name(log_path, now - timedelta(days=9))
    old.write_text("{}\n")
    young.write_text("{}\n")
    (tmp_path / "unrelated.log").write_text("keep\n")
    log = AuditLog(AuditSettings(level=1, path=log_path, max_age_days=10), rotate_bytes=64)
    for i in range(10):
        log.write({"seq": i, "pad": "y" * 30})
    log.close()
    assert not old.exists()
    assert young.exists() and (tmp_path / "unrelated.log").exists()


def test_backup_names_round_trip() -> None:
    """A rotated name parses back to its time (millisecond precision) and others are ignored."""
    active = Path("/x/corral-api-audit.log")
    when = datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    name = backup_name(active, when)
    assert name.name == "corral-api-audit-2024-05-01T10-00-00.123.log"
    parsed = parse_backup(active, name)
    assert parsed is not None and parsed.rotated_at == when
    assert parse_backup(active, Path("/x/corral-api-audit-notatime.log")) is None


def test_unwritable_path_never_raises_and_is_counted(tmp_path: Path) -> None:
    """A log whose parent is a file: write() returns, the loss shows in stats."""
    (tmp_path / "file").write_text("")
    log = AuditLog(AuditSettings(level=1, path=tmp_path / "file" / "audit.log"))
    for i in range(5):
        log.write({"seq": i})
    log.close()
    stats = log.stats()
    assert stats["written"] == 0
    assert stats["dropped"] == 5 and stats["errors"] >= 1
    assert str(tmp_path / "file" / "audit.log") in log.last_error


def test_full_disk_never_raises_and_is_counted() -> None:
    """Writing to /dev/full (ENOSPC on every write) drops and counts, never raises."""
    if not os.path.exists("/dev/full"):
        return
    log = AuditLog(AuditSettings(level=1, path=Path("/dev/full")))
    log.write({"seq": 1})
    log.close()
    stats = log.stats()
    assert stats["dropped"] == 1 and stats["errors"] == 1
    assert "No space left" in log.last_error


def test_records_after_close_are_dropped_not_raised(tmp_path: Path) -> None:
    """write() after close() is counted as dropped."""
    log = AuditLog(AuditSettings(level=1, path=tmp_path / "a.log"))
    log.close()
    log.write({"late": True})
    assert log.stats()["dropped"] == 1


def test_unserialisable_record_is_counted_and_others_written(tmp_path: Path) -> None:
    """A record that is not JSON is dropped alone; its neighbours are written."""
    log = AuditLog(AuditSettings(level=1, path=tmp_path / "a.log"))
    log.write({"ok": 1})
    log.write({"bad": object()})
    log.write({"ok": 2})
    log.close()
    assert [r["ok"] for r in all_lines(tmp_path / "a.log")] == [1, 2]
    assert log.stats()["errors"] == 1


def test_log_file_is_private(tmp_path: Path) -> None:
    """The audit file is created mode 0600 (it records who did what)."""
    log = AuditLog(AuditSettings(level=1, path=tmp_path / "sub" / "a.log"))
    log.write({"x": 1})
    log.close()
    assert (tmp_path / "sub" / "a.log").stat().st_mode & 0o777 == 0o600


def line_of(record: dict[str, object]) -> dict[str, object]:
    """The decoded line render_line makes of `record` (which must be one line)."""
    line = render_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = json.loads(line)
    assert isinstance(decoded, dict)
    return decoded


def body_of(data: bytes, content_type: str, *, from_server: bool) -> RawBody:
    """A captured body with the given bytes and content type."""
    body = RawBody(RawHeaders([(b"content-type", content_type.encode())]), from_server=from_server)
    body.add(data, 1 << 20)
    return body


def test_bodies_always_render_to_one_valid_line() -> None:
    """Pretty-printed, invalid and secret-bearing JSON bodies all give one parseable line."""
    pretty = b'{\n  "a": 1,\n  "b": [1, 2]\n}'
    broken = b'{"password": "hunter2", "a": '
    secret = b'{"data": [{"Token": "t1"}]}'
    record = {
        "auditID": "x",
        "requestBody": body_of(broken, "application/json", from_server=False),
        "responseBody": body_of(pretty, "application/json", from_server=True),
    }
    decoded = line_of(record)
    assert decoded["responseBody"] == {"a": 1, "b": [1, 2]}
    assert decoded["requestBody"] == '{"password": "[redacted]", "a": '
    redacted = line_of({"responseBody": body_of(secret, "application/json", from_server=True)})
    assert redacted == {"responseBody": {"data": [{"Token": "[redacted]"}]}}


def test_a_clients_invalid_json_is_never_spliced_raw() -> None:
    """A request body that only looks like JSON is parsed, found invalid, and logged as text."""
    sneaky = b'{"a": 1}, "injected": {"b": 2}'
    decoded = line_of({"requestBody": body_of(sneaky, "application/json", from_server=False)})
    assert decoded == {"requestBody": sneaky.decode()}
