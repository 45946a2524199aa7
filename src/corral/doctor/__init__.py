"""`corral doctor`: checks a live install against Rancher's load-balancer requirements.

    model      Target, CheckResult, Fix, Report          catalogue  the checks in order, fixes
    dns        the name resolves                          report     text table / JSON (pure)
    tls_probe  handshakes (I/O)     tls_logic   versions, chain, names, expiry, cacerts (pure)
    http_probe requests (I/O)       http_logic  HTTP/2, redirects, headers, streaming (pure)
    ws_client  WebSocket over HTTP/1.1 and HTTP/2 (I/O)   ws_logic  upgrade, idle (pure)
    nodes_logic  /healthz and spreading (pure)
    gather     every observation at once (I/O)            judge     observations → report (pure)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from corral.doctor.model import Report, Target


async def diagnose(target: Target) -> Report:
    """Run every check against `target`."""
    from corral.doctor.gather import observe
    from corral.doctor.judge import judge

    seen = await observe(target)
    return judge(target, seen, datetime.now(UTC))


def run(target: Target) -> Report:
    """`diagnose` in a fresh event loop."""
    return asyncio.run(diagnose(target))
