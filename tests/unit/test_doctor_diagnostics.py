"""The server's diagnostic endpoint echoes only Host and X-Forwarded-* (pure part)."""

from __future__ import annotations

from corral.server.diagnostics import STREAM_CHUNKS, echoed_headers, stream_line


def test_only_host_and_forwarded_headers_are_echoed_in_order() -> None:
    """Cookies, Authorization and any other header are left out; repeats stay visible."""
    headers = [(b"Host", b"rancher.test"), (b"cookie", b"R_SESS=secret"),
               (b"authorization", b"Bearer secret"), (b"x-forwarded-for", b"10.0.0.1"),
               (b"X-Forwarded-For", b"10.0.0.2"), (b"x-forwarded-proto", b"https")]
    echoed = echoed_headers(headers)
    assert echoed == {"host": ["rancher.test"], "x-forwarded-proto": ["https"],
                      "x-forwarded-port": [], "x-forwarded-for": ["10.0.0.1", "10.0.0.2"]}
    assert "secret" not in repr(echoed)


def test_stream_lines_are_short_and_numbered() -> None:
    """Each chunk is one short numbered line (far below any proxy buffer)."""
    assert stream_line(1) == f"chunk 1 of {STREAM_CHUNKS}\n".encode()
    assert all(len(stream_line(i)) < 32 for i in range(1, STREAM_CHUNKS + 1))
