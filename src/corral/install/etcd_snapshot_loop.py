"""Recurring snapshots taken by the cluster itself (RKE's etcd-rolling-snapshots), on each etcd
node: `corral etcd snapshot-loop`.

With `services.etcd` asking for snapshots (`backup: true`, or RKE's `snapshot: true` /
`backup_config`), each node's etcd service runs as

    corral etcd snapshot-loop --snapshot-dir … --creation 21600s --retention 86400s \
        --etcdctl … --endpoint … --cacert … --cert … --key … -- /usr/bin/etcd --name=…

which runs the etcd member as its child (same process group, same log; the loop exits with the
member's exit status and passes SIGTERM on to it, so the supervisor stops and restarts them
together) and, every `--creation`, takes a snapshot of that member into the node's snapshot
directory as `<UTC time>_etcd` with its `.sha256`, then removes the recurring snapshots older
than `--retention` (the newest always stays). The schedule follows the newest snapshot in the
directory, so a restart of the member neither delays nor repeats one. A snapshot that fails
(the member not up yet) is tried again after a tenth of the interval (1 to 60 s). Without a
member after `--`, the loop only takes snapshots until SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from corral.install.etcd_snapshot_files import (
    CHECKSUM_SUFFIX,
    PARTIAL_SUFFIX,
    checksum_line,
    expired,
    recurring_name,
    recurring_time,
)

SAVE_TIMEOUT_S = 300.0
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """What one node's snapshot loop does."""

    snapshot_dir: Path
    interval_s: float
    retention_s: float
    etcdctl: str
    endpoint: str
    cacert: str
    cert: str
    key: str
    child: tuple[str, ...] = ()  # the etcd member's command line; () = snapshots only


def say(message: str) -> None:
    """One line of the etcd service's log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} corral etcd snapshot-loop: {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def take_snapshot(options: LoopOptions, now: datetime) -> str:
    """One recurring snapshot of the member into the directory; its name. OSError or
    RuntimeError (with etcdctl's last line) when it fails."""
    directory = options.snapshot_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = recurring_name(now, os.listdir(directory))
    partial = directory / f"{name}{PARTIAL_SUFFIX}"
    argv = [options.etcdctl, f"--endpoints={options.endpoint}", f"--cacert={options.cacert}",
            f"--cert={options.cert}", f"--key={options.key}", "snapshot", "save", str(partial)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SAVE_TIMEOUT_S,
                          env={**os.environ, "ETCDCTL_API": "3"}, check=False)
    if done.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        lines = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
        raise RuntimeError(lines[-1][:300])
    digest = _sha256(partial)
    checksum = directory / f"{name}{CHECKSUM_SUFFIX}"
    tmp = directory / f".{checksum.name}.tmp"
    tmp.write_bytes(checksum_line(name, digest))
    os.replace(tmp, checksum)  # the checksum first: the snapshot appears whole, checkable
    os.replace(partial, directory / name)
    return name


def prune(options: LoopOptions, now: datetime) -> list[str]:
    """Delete the recurring snapshots the retention no longer keeps; their names."""
    try:
        names = os.listdir(options.snapshot_dir)
    except OSError:
        return []
    gone = expired([n for n in names if not n.endswith((CHECKSUM_SUFFIX, PARTIAL_SUFFIX))],
                   now, options.retention_s)
    for name in gone:  # the checksum first: a listing never shows a snapshot going away
        for path in (options.snapshot_dir / f"{name}{CHECKSUM_SUFFIX}",
                     options.snapshot_dir / name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return gone


def first_due(options: LoopOptions, now: float) -> float:
    """When (time.time()) the next snapshot is due: one interval after the newest recurring
    snapshot of the directory, or one interval from now when there is none."""
    try:
        names = os.listdir(options.snapshot_dir)
    except OSError:
        names = []
    times = [t.timestamp() for t in (recurring_time(n) for n in names) if t is not None]
    return (max(times) if times else now) + options.interval_s


class Loop:
    """The snapshot schedule, beside the member it runs."""

    def __init__(self, options: LoopOptions) -> None:
        self.options = options
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def _tick(self) -> float:
        """Take one snapshot and prune; the seconds until the next try."""
        now = datetime.now(UTC)
        try:
            name = take_snapshot(self.options, now)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            retry = min(RETRY_MAX_S, max(RETRY_MIN_S, self.options.interval_s / 10))
            say(f"snapshot failed ({exc}); trying again in {retry:g}s")
            return retry
        say(f"took snapshot {name} in {self.options.snapshot_dir}")
        for gone in prune(self.options, datetime.now(UTC)):
            say(f"removed snapshot {gone} (older than {self.options.retention_s:g}s)")
        return self.options.interval_s

    def run(self) -> int:
        """Run the member (if any) and the schedule; the member's exit status."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.options.child:
            self.child = subprocess.Popen(self.options.child, stdin=subprocess.DEVNULL)
        due = first_due(self.options, time.time())
        say(f"snapshots every {self.options.interval_s:g}s into {self.options.snapshot_dir}, "
            f"kept {self.options.retention_s:g}s; next in {max(0.0, due - time.time()):.0f}s")
        while True:
            if self.stopping.is_set():
                return self._child_exit(self.child.wait()) if self.child is not None else 0
            wait = max(0.0, due - time.time())
            if self.child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return self._child_exit(self.child.wait(timeout=wait))
            elif self.stopping.wait(wait):
                return 0
            if self.stopping.is_set():
                continue  # the member is stopping: wait for it, take nothing more
            due = time.time() + self._tick()

    def _child_exit(self, code: int) -> int:
        if not self.stopping.is_set():
            say(f"the etcd member exited ({code}): exiting with it")
        return code if code >= 0 else 128 - code


def run_loop(options: LoopOptions) -> int:
    """The `corral etcd snapshot-loop` process."""
    return Loop(options).run()
