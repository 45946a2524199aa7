"""RKE-style progress lines of `corral up`."""

from __future__ import annotations

import io

from corral.install.progress import Progress


def test_progress_lines_are_rke_style() -> None:
    """`INFO[0003] [etcd] …`: level, whole seconds since the start, phase, message."""
    now = [100.0]
    out = io.StringIO()
    progress = Progress(out, clock=lambda: now[0])
    now[0] = 103.7
    progress.info("Starting etcd member on node [node-1]", "etcd")
    progress.fatal("boom\nsecond line", "server")
    assert out.getvalue().splitlines() == [
        "INFO[0003] [etcd] Starting etcd member on node [node-1]",
        "FATA[0003] [server] boom",
        "           second line",
    ]
