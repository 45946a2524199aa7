"""The handshake part of bench/lb_vs_nginx: reading openssl's output and the report's lines."""

from __future__ import annotations

from bench.handshakes import (
    CORRAL,
    CORRAL_BEFORE,
    NGINX,
    S_TIME_COUNT,
    TEMP_KEY_LINE,
    HandshakeFigures,
    handshake_report,
)

S_TIME_OUTPUT = """\
Collecting connection statistics for 10 seconds
tttttttttt

4321 connections in 2.91s; 1484.88 connections/user sec, bytes read 0
4321 connections in 11 real seconds, 0 bytes read per connection
"""


def test_s_time_count_is_read_from_the_real_seconds_line() -> None:
    """The connection count comes from s_time's wall-clock line."""
    match = S_TIME_COUNT.search(S_TIME_OUTPUT)
    assert match is not None
    assert match.group(1) == "4321"


def test_temp_key_names_the_group() -> None:
    """s_client's `Server Temp Key` line gives X25519 or the curve name."""
    for line, group in (
        ("Server Temp Key: X25519, 253 bits", "X25519"),
        ("Server Temp Key: ECDH, prime256v1, 256 bits", "prime256v1"),
    ):
        match = TEMP_KEY_LINE.search(f"---\n{line}\n---\n")
        assert match is not None and match.group(1) == group


def test_report_lines_and_ratios() -> None:
    """A row per proxy, then handshakes/s and CPU ratios before and after X25519."""
    figures = [
        HandshakeFigures(NGINX, "nginx", "X25519", [400.0, 500.0, 450.0], [400.0], [0.2]),
        HandshakeFigures(CORRAL_BEFORE, "before", "prime256v1", [300.0], [800.0], [1.0]),
        HandshakeFigures(CORRAL, "after", "X25519", [450.0], [500.0], [0.98]),
    ]
    lines = handshake_report(figures, 10)
    rows = [line for line in lines if "handshakes/s  " in line]
    assert len(rows) == 3
    assert "450 handshakes/s" in rows[0] and "(= 2,500/s per core)" in rows[0]
    assert "group prime256v1" in rows[1] and "worker busy 100%" in rows[1]
    assert lines[-3] == (f"ratio corral/{NGINX} TLS handshakes/s: before X25519 0.67, after 1.00")
    assert lines[-2].endswith("before X25519 0.50, after 0.80")
    assert lines[-1] == (
        "ratio corral after/before X25519 TLS handshakes/s: 1.50, CPU per handshake: 0.62"
    )
