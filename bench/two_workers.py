"""The two-worker comparison: wrk against corral lb and nginx with Rancher's example NGINX
configuration (both `worker_processes 2`) and HAProxy (`nbthread 2`), in the same run,
interleaved, no CPU pinning."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from statistics import median

from bench.configs import CertFiles, ProxyPorts
from bench.targets import PortPicker, start_corral_lb, start_haproxy, start_nginx_proxy
from bench.wrk import run_wrk

WORKERS = 2
NGINX = "nginx-rancher-example"  # the nginx target's name (bench.targets.start_nginx_proxy)


def measure_two_workers(
    stack: contextlib.ExitStack,
    work: Path,
    certs: CertFiles,
    backend_port: int,
    *,
    duration_s: int,
    runs: int,
    connections: int,
    script: Path,
    say: Callable[[str], None],
) -> dict[str, list[float]]:
    """Requests/s of each run for nginx-rancher-example, haproxy and corral-lb with two workers
    (threads) each."""
    port = PortPicker()
    urls: dict[str, str] = {}
    for name in (NGINX, "haproxy", "corral-lb"):
        ports = ProxyPorts(https=port(), http=port())
        if name == "corral-lb":
            service = start_corral_lb(work, ports, backend_port, certs, None, WORKERS)
        elif name == "haproxy":
            service = start_haproxy(work, ports, backend_port, certs, None, threads=WORKERS)
        else:
            service = start_nginx_proxy(
                work, ports, backend_port, certs, None, tuned=False, workers=WORKERS
            )
        stack.callback(service.stop)
        service.wait_listening([ports.https, ports.http])
        urls[name] = f"https://127.0.0.1:{ports.https}/"
    results: dict[str, list[float]] = {name: [] for name in urls}
    for url in urls.values():
        run_wrk(url, 1, connections, script, None)  # warm-up: TLS sessions, upstream pools
    for run in range(1, runs + 1):
        for name, url in urls.items():
            result = run_wrk(url, duration_s, connections, script, None)
            results[name].append(result.requests_per_s)
            say(f"2 workers, run {run}/{runs} {name}: {result.requests_per_s:,.0f} req/s")
    return results


def two_worker_report(results: dict[str, list[float]]) -> list[str]:
    """Lines for the report: each target's median and the ratio corral/nginx-rancher-example."""
    corral = median(results["corral-lb"])
    nginx = median(results[NGINX])
    haproxy = median(results["haproxy"])
    nginx_label = f"{NGINX}-{WORKERS}w"
    width = len(nginx_label)
    return [
        "",
        f"wrk with {WORKERS} workers each (HAProxy: {WORKERS} threads; no pinning; wrk, backend "
        "and proxies share the cores):",
        f"  {nginx_label} {nginx:>10,.0f} req/s",
        f"  {f'haproxy-{WORKERS}w':<{width}} {haproxy:>10,.0f} req/s",
        f"  {f'corral-lb-{WORKERS}w':<{width}} {corral:>10,.0f} req/s",
        f"ratio corral/{NGINX} with {WORKERS} workers (wrk): {corral / nginx:.2f}",
        f"ratio corral/haproxy with {WORKERS} workers (wrk): {corral / haproxy:.2f}",
    ]
