"""bench/h2load.py: h2load's summary parsed and the HTTP/2 report lines (pure, no processes)."""

from __future__ import annotations

import math

import pytest
from bench.h2load import (
    H2Figures,
    H2Result,
    h2_report,
    h2load_argv,
    parse_h2load_output,
    requests_per_connection,
)
from bench.processes import BenchError

SUMMARY = """\
TLS Protocol: TLSv1.3
Application protocol: h2
finished in 2.00s, 8000.00 req/s, 609.89KB/s
requests: 16253 total, 16253 started, 16253 done, 16000 succeeded, 253 failed, 253 errored
status codes: 15990 2xx, 0 3xx, 10 4xx, 0 5xx
traffic: 1.19MB (1249056) total, 750.00KB (768000) headers (space savings 51.02%)
                     min         max         mean         sd        +/- sd
time for request:     3.77ms    101.51ms    950.88us     15.13ms    71.68%
"""


def test_summary_is_parsed() -> None:
    """req/s, successes, mean request time (any unit) and errors (failed + non-2xx)."""
    result = parse_h2load_output(SUMMARY)
    assert result.requests_per_s == 8000.0
    assert result.requests == 16000
    assert math.isclose(result.mean_ms, 0.95088)
    assert result.errors == 253 + 10


def test_http_1_1_fallback_is_an_error() -> None:
    """A run that did not negotiate h2 measures nothing about HTTP/2."""
    with pytest.raises(BenchError, match="did not negotiate HTTP/2"):
        parse_h2load_output(SUMMARY.replace("protocol: h2", "protocol: http/1.1"))


def test_output_without_summary_is_an_error() -> None:
    """h2load output without its summary lines (a crash, a refused connection) is reported."""
    with pytest.raises(BenchError, match="no summary"):
        parse_h2load_output("starting benchmark...\nconnect failed\n")


def test_argv_counts_requests_per_connection_within_nginx_limit() -> None:
    """16 connections x 32 streams; 100 requests per connection per second of --duration, at
    most nginx's keepalive_requests (1000), since h2load does not reconnect after GOAWAY."""
    assert requests_per_connection(1) == 100
    assert requests_per_connection(10) == 1000
    assert requests_per_connection(30) == 1000
    assert h2load_argv("https://x/", 1000) == [
        "h2load",
        "-t1",
        "-c16",
        "-m32",
        "-n16000",
        "https://x/",
    ]


def test_report_has_a_row_per_proxy_and_ratios_against_both_nginx() -> None:
    """Rows are prefixed `h2 ` and the ratios are corral's median req/s over each nginx's."""

    def figures(name: str, *rates: float) -> H2Figures:
        return H2Figures(name, [H2Result(1000, rate, 10.0, 0) for rate in rates], [100.0])

    lines = h2_report(
        [
            figures("nginx-rancher-example", 4000.0),
            figures("nginx-tuned", 5000.0, 3000.0, 4000.0),
            figures("corral-lb", 1000.0, 2000.0, 3000.0),
        ],
        10,
    )
    assert [
        line.split()[1] for line in lines if line.startswith("h2 ") and "ratio" not in line
    ] == [
        "nginx-rancher-example",
        "nginx-tuned",
        "corral-lb",
    ]
    assert lines[-2:] == [
        "h2 ratio corral/nginx-rancher-example: 0.50",
        "h2 ratio corral/nginx-tuned: 0.50",
    ]
