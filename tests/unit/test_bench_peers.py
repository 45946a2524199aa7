"""bench/lb_vs_nginx's second peer and new figures, as pure rendering: HAProxy's configuration,
the connection-count curve, idle WebSockets and the per-peer ratio lines (no processes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench.configs import CertFiles, ProxyPorts, haproxy_cfg
from bench.curve import Curve, curve_report, parse_curve
from bench.report import TargetFigures, peer_lines
from bench.wrk import WrkResult
from bench.ws_idle import WsResult, websocket_capacity, websocket_report

CERTS = CertFiles(Path("/w/fullchain.pem"), Path("/w/privkey.pem"), Path("/w/ca.pem"))


def wrk(rate: float, p99: float = 1.0) -> WrkResult:
    return WrkResult(requests=int(rate), requests_per_s=rate, p50_ms=0.5, p99_ms=p99, errors=0)


def test_haproxy_config_is_the_equivalent_of_the_nginx_one() -> None:
    """One thread, TLS 1.2-1.3, ALPN h2 + http/1.1, shared kept-alive upstream connections,
    nginx's timeouts, the X-Forwarded-* headers and the port-80 redirect."""
    cfg = haproxy_cfg(Path("/w/haproxy"), ProxyPorts(8443, 8080), 9000, CERTS)
    for line in (
        "nbthread 1",
        "ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3",
        "bind 127.0.0.1:8443 ssl crt /w/combined.pem alpn h2,http/1.1",
        "http-reuse always",
        "timeout server 900s",
        "timeout tunnel 900s",
        "timeout http-keep-alive 75s",
        "http-request set-header X-Forwarded-Proto https",
        "http-request set-header X-Forwarded-Port %[dst_port]",
        "option forwardfor",
        "bind 127.0.0.1:8080",
        "redirect location https://rancher.bench.test%[capture.req.uri] code 301",
        "server backend 127.0.0.1:9000",
    ):
        assert line in cfg, line
    assert "log " not in cfg  # no log, as access_log off
    assert "nbthread 2" in haproxy_cfg(Path("/w"), ProxyPorts(1, 2), 3, CERTS, threads=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10,64,500,2000", (10, 64, 500, 2000)), ("64", (64,)), ("0", ()), ("", ())],
)
def test_curve_option(text: str, expected: tuple[int, ...]) -> None:
    """--curve takes comma-separated connection counts; 0 or nothing skips the curve."""
    assert parse_curve(text) == expected


def test_curve_option_refuses_zero_counts() -> None:
    """A connection count below 1 is an error."""
    with pytest.raises(ValueError, match="at least 1"):
        parse_curve("10,0")


def test_curve_report_has_a_row_per_count_and_ratios_per_peer() -> None:
    """requests/s (p99) per proxy and count; corral's ratio to nginx-tuned and HAProxy at each."""
    counts = (10, 2000)
    curves = [
        Curve("nginx-tuned", {10: wrk(1000, 2.0), 2000: wrk(4000)}),
        Curve("haproxy", {10: wrk(2000), 2000: wrk(2000)}),
        Curve("corral-lb", {10: wrk(500), 2000: wrk(1000)}),
    ]
    lines = curve_report(curves, counts, 10)
    assert any(line.startswith("10 ") and "1,000 (2.0)" in line for line in lines)
    assert lines[-2] == "curve ratio corral/nginx-tuned by connections: 10: 0.50, 2000: 0.25"
    assert lines[-1] == "curve ratio corral/haproxy by connections: 10: 0.25, 2000: 0.50"
    assert curve_report(curves, (), 10) == []


def test_websocket_capacity_counts_two_descriptors_each() -> None:
    """A proxy holds two descriptors per WebSocket, plus its own."""
    assert websocket_capacity(20000) == 9500
    assert websocket_capacity(1 << 20) > 10000
    assert websocket_capacity(100) == 0


def test_websocket_report_names_the_cap_and_the_ratios() -> None:
    """KiB per WebSocket per proxy; the cap by the open-files limit is said; ratios per peer."""
    def result(name: str, kib: float, opened: int = 1000) -> WsResult:
        return WsResult(name, 1000, opened, 0, int(kib * 1024 * opened))

    results = [result("nginx-tuned", 10.0), result("haproxy", 20.0), result("corral-lb", 15.0)]
    lines = websocket_report(results, 1000, capped_by=10000)
    assert "asked for 10,000" in lines[1]
    assert any("corral-lb" in line and "15.0 KiB/WebSocket" in line for line in lines)
    assert lines[-2:] == [
        "memory per idle WebSocket corral/nginx-tuned: 1.50",
        "memory per idle WebSocket corral/haproxy: 0.75",
    ]
    short = websocket_report([result("corral-lb", 15.0, opened=900)], 1000, None)
    assert "only 900 opened" in short[-1]


def test_peer_lines_compare_corral_with_each_peer() -> None:
    """Throughput and p99 as corral / peer, CPU as peer / corral, memory as corral / peer."""
    corral = TargetFigures("corral-lb", "", [wrk(600, 3.0)], 24.0, cpu_us_per_request=[100.0])
    peer = TargetFigures("haproxy", "", [wrk(1000, 2.0)], 12.0, cpu_us_per_request=[50.0])
    (line,) = peer_lines(corral, [peer])
    assert line == (
        "corral/haproxy: throughput 0.60, cpu-efficiency 0.50, p99 latency 1.50, "
        "memory per idle TLS connection 2.00"
    )
    no_memory = TargetFigures("haproxy", "", [wrk(1000)], None)
    assert peer_lines(corral, [no_memory])[0].endswith("memory per idle TLS connection nan")
    pooled = TargetFigures("nginx-tuned", "", [wrk(1000)], 0.0)  # 200 idle: nothing grew
    assert peer_lines(corral, [pooled], idle_connections=200)[0].endswith(
        "memory per idle TLS connection n/a (200 idle connections are too few to see the "
        "peers' memory; measure with at least 1000)")
    assert math.isnan(Curve("x").rate(10))
