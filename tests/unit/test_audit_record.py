"""The middleware's audit lines: written directly, byte for byte what the JSON encoder writes."""

from __future__ import annotations

import json
import random
import uuid
from http import HTTPStatus
from typing import Any

import pytest

from corral.server import audit, audit_record
from corral.server.audit import Exchange
from corral.server.audit_record import format_timestamp, json_string, render_line
from corral.server.audit_settings import LEVEL_METADATA, LEVEL_REQUEST_BODY, LEVEL_RESPONSE_BODY

ADMIN = {"name": "admin", "group": ["system:authenticated", "system:cattle:authenticated"]}
SETTINGS_BODY = json.dumps(
    {"type": "collection", "data": [{"id": "cacerts", "value": "-----BEGIN-----\nMIIB\n"}]},
    separators=(",", ":"),
).encode()


def exchange(
    level: int = LEVEL_RESPONSE_BODY,
    *,
    user: object = ADMIN,
    request_headers: list[tuple[bytes, bytes]] | None = None,
    response_headers: list[tuple[bytes, bytes]] | None = None,
    request_body: bytes = b"",
    response_body: bytes = SETTINGS_BODY,
    status: Any = 200,
    limit: int = 1 << 20,
    **scope: Any,
) -> Exchange:
    """A finished exchange of an HTTP request through the middleware's hands."""
    full_scope: dict[str, Any] = {
        "type": "http", "path": "/v3/settings", "raw_path": b"/v3/settings", "query_string": b"",
        "method": "GET", "client": ("127.0.0.1", 40000), "state": {"user": user},
        "headers": request_headers if request_headers is not None else [
            (b"host", b"corral.example.com"), (b"authorization", b"Bearer token-x:secret"),
            (b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-proto", b"https"),
        ],
        **scope,
    }
    if full_scope["method"] is None:  # a WebSocket scope has none
        del full_scope["method"]
    ex = Exchange(full_scope, level)
    ex.response_started(status, response_headers if response_headers is not None else [
        (b"content-length", str(len(response_body)).encode()),
        (b"content-type", b"application/json"),
    ])
    if ex.req_body is not None:
        ex.req_body.add(request_body, limit)
    if ex.resp_body is not None:
        ex.resp_body.add(response_body, limit)
    return ex.finish()


CASES: dict[str, Exchange] = {
    "settings at level 3": exchange(),
    "level 1": exchange(LEVEL_METADATA),
    "level 2, login body with secrets": exchange(
        LEVEL_REQUEST_BODY, request_body=b'{"username": "admin", "password": "hunter2"}',
        method="POST", query_string=b"action=login",
    ),
    "no user, no client, no headers": exchange(
        user=None, client=None, request_headers=[], response_headers=[],
    ),
    "groups as a tuple, odd names": exchange(
        user={"name": 'a"b\\c\u00e9\U0001F600', "group": ("x\ny", 7)},
    ),
    "groups not a list": exchange(user={"name": "u", "group": "nope"}),
    "user not a dict": exchange(user="admin"),
    "duplicate and mixed-case headers, latin-1 and control bytes": exchange(
        request_headers=[
            (b"X-Custom", b"one"), (b"x-custom", b"two"), (b"COOKIE", b"R_SESS=x"),
            (b"x-latin", b"caf\xe9 \x7f\x01"), (b"x-quote", b'say "hi" \\ there'),
            (b"Proxy-Authorization", b"Basic eA=="), (b"x-empty", b""),
        ],
        response_headers=[(b"set-cookie", b"R_SESS=secret"), (b"x-a", b"1"), (b"X-A", b"2")],
    ),
    "non-ASCII path and query": exchange(raw_path=b"/v3/caf\xc3\xa9", query_string=b"q=\xff&x=1"),
    "path only (no raw_path)": exchange(raw_path=None, path="/v3/plain"),
    "truncated bodies": exchange(
        request_body=b'{"a": "' + b"x" * 100 + b'"}', response_body=b"y" * 300, limit=50,
        response_headers=[(b"content-type", b"text/plain")], method="PUT",
    ),
    "response body holding a secret key": exchange(response_body=b'{"data":[{"Token":"t"}]}'),
    "pretty-printed response body": exchange(response_body=b'{\n  "a": 1\n}'),
    "binary response body": exchange(
        response_body=b"\x00\x01", response_headers=[(b"content-type", b"image/png")],
    ),
    "empty response body": exchange(response_body=b""),
    "status as an HTTPStatus": exchange(status=HTTPStatus.CREATED),
    "status 500 after an error": exchange(status=500),
    "websocket handshake (no method)": exchange(
        LEVEL_METADATA, type="websocket", method=None, path="/v3/subscribe",
        raw_path=b"/v3/subscribe",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_direct_line_is_what_the_encoder_writes(case: str) -> None:
    """Exchange.render_line() is byte for byte render_line(Exchange.record())."""
    ex = CASES[case]
    line = ex.render_line()
    assert line == render_line(ex.record())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b"secret" not in line and b"hunter2" not in line and b"R_SESS" not in line
    json.loads(line)


def test_field_order_and_bodies_last() -> None:
    """The fields keep Rancher's order; truncation flags precede the bodies, which end the line."""
    decoded = json.loads(CASES["truncated bodies"].render_line())
    assert list(decoded) == [
        "auditID", "requestURI", "user", "method", "remoteAddr", "requestTimestamp",
        "responseTimestamp", "responseCode", "requestHeader", "responseHeader",
        "requestBodyTruncated", "responseBodyTruncated", "requestBody", "responseBody",
    ]


def test_audit_ids_are_the_uuid4_of_the_same_bits() -> None:
    """new_audit_id() formats what uuid.UUID(int=bits, version=4) does, from the same bits."""
    for seed in range(500):
        audit._ids.seed(seed)
        made = audit.new_audit_id()
        expected = uuid.UUID(int=random.Random(seed).getrandbits(128), version=4)
        assert made == str(expected)
        assert uuid.UUID(made).version == 4 and uuid.UUID(made).variant == uuid.RFC_4122


def test_json_string_matches_json_dumps() -> None:
    """json_string escapes as json.dumps does (ASCII only)."""
    texts = ["", "plain", 'q"uote\\', "\n\r\t\x00\x1f\x7f", "caf\u00e9", "\U0001F600", "\u2028"]
    for text in texts:
        assert json_string(text) == json.dumps(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1714557600.123456, "2024-05-01T10:00:00.123456Z"),
        (1714557600.9999996, "2024-05-01T10:00:01.000000Z"),
    ],
)
def test_timestamps_are_rfc3339_utc_with_microseconds(seconds: float, text: str) -> None:
    """format_timestamp rounds to the microsecond, carrying into the next second."""
    assert format_timestamp(seconds) == text


def test_a_remembered_body_never_lets_a_different_one_through() -> None:
    """After a safe body was spliced, another of the same length with a secret key is redacted."""
    safe = b'{"data":[{"name":"x","value":"abc"}]}'
    secret = b'{"data":[{"token":"x","value":"ab"}]}'
    assert len(safe) == len(secret)
    for _ in range(2):  # the second time the safe body is a remembered one
        assert json.loads(exchange(response_body=safe).render_line())["responseBody"] == {
            "data": [{"name": "x", "value": "abc"}]
        }
        line = exchange(response_body=secret).render_line()
        redacted = {"data": [{"token": "[redacted]", "value": "ab"}]}
        assert json.loads(line)["responseBody"] == redacted


def test_remembered_bodies_are_few_and_small() -> None:
    """At most RECENTLY_SPLICED_BODIES bodies are kept, none over the size limit."""
    for size in range(100):
        exchange(response_body=b'{"a":"' + b"x" * size + b'"}').render_line()
    exchange(response_body=b'{"a":"' + b"x" * audit_record.RECENTLY_SPLICED_MAX_BYTES + b'"}')
    kept = audit_record._recently_spliced
    assert 0 < len(kept) <= audit_record.RECENTLY_SPLICED_BODIES
    assert all(len(body) <= audit_record.RECENTLY_SPLICED_MAX_BYTES for body in kept.values())
