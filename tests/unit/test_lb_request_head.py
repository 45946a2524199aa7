"""The request-head checks that keep requests from being smuggled through the proxy."""

from __future__ import annotations

import pytest

from corral.proxy.errors import RequestRejected
from corral.proxy.request_head import read_request_head

H = list[tuple[bytes, bytes]]


@pytest.mark.parametrize(
    ("method", "url", "headers", "http10", "expected"),
    [
        (b"GET", b"/a?b", [(b"Host", b"h")], False, (b"/a?b", b"h", False, False)),
        (
            b"POST",
            b"/",
            [(b"Host", b"h"), (b"Content-Length", b"3")],
            False,
            (b"/", b"h", False, True),
        ),
        (
            b"POST",
            b"/",
            [(b"Host", b"h"), (b"content-length", b"0")],
            False,
            (b"/", b"h", False, False),
        ),
        (
            b"POST",
            b"/",
            [(b"Host", b"h"), (b"Transfer-Encoding", b"Chunked")],
            False,
            (b"/", b"h", True, True),
        ),
        (b"GET", b"/", [], True, (b"/", None, False, False)),
        (
            b"GET",
            b"http://x.example:8080/p?q",
            [(b"Host", b"ignored")],
            False,
            (b"/p?q", b"x.example:8080", False, False),
        ),
        (b"OPTIONS", b"*", [(b"Host", b"h")], False, (b"*", b"h", False, False)),
    ],
)
def test_accepted_heads(
    method: bytes, url: bytes, headers: H, http10: bool, expected: tuple[object, ...]
) -> None:
    """Well-formed heads give the target, Host, chunking and whether a body follows."""
    assert read_request_head(method, url, headers, http10=http10) == expected


@pytest.mark.parametrize(
    ("url", "headers", "code", "words"),
    [
        (b"/", [], 400, "without a Host"),
        (b"/", [(b"Host", b"a"), (b"host", b"b")], 400, "more than one Host"),
        (b"/", [(b"Host", b"a"), (b"Transfer-Encoding", b"gzip, chunked")], 501, "chunked"),
        (b"relative/path", [(b"Host", b"a")], 400, "invalid request target"),
        (b"ftp://x/", [(b"Host", b"a")], 400, "invalid request target"),
    ],
)
def test_rejected_heads(url: bytes, headers: H, code: int, words: str) -> None:
    """Ambiguous or unsupported heads are refused with the status the client will see."""
    with pytest.raises(RequestRejected) as info:
        read_request_head(b"GET", url, headers, http10=False)
    assert info.value.status.code == code
    assert words in info.value.detail
