"""Pure parts of the API: setting checks, login TTL, agent command, node health, event
messages, shell framing, and the OpenAPI description matching the route table."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from starlette.routing import Route, WebSocketRoute

from corral.server.api.clusters import agent_command
from corral.server.api.errors import InvalidQuery
from corral.server.api.http import ApiEndpoint
from corral.server.api.login import session_ttl_ms
from corral.server.api.nodes import conditions, disk_check, memory_check
from corral.server.api.routes import api_routes
from corral.server.context import ServerContext
from corral.server.domain.settings import check_registry, check_server_url
from corral.server.events import event_message, event_record, parse_revision
from corral.server.shell import FrameError, decode_frame, encode_frame, parse_resize
from corral.store import open_store
from corral.store.base import Event, KeyValue


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://rancher.example.com", True),
        ("https://rancher.example.com:8443", True),
        ("", True),
        ("http://rancher.example.com", False),
        ("https://rancher.example.com/path", False),
        ("https://user@rancher.example.com", False),
        ("rancher.example.com", False),
    ],
)
def test_server_url_check(value: str, ok: bool) -> None:
    """`server-url` is https://host[:port] (or empty)."""
    assert (check_server_url(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("registry.example.com:5000", True),
        ("registry.example.com", True),
        ("registry.example.com/mirror", True),
        ("", True),
        ("https://registry.example.com", False),
        ("registry.example.com/", False),
        ("reg istry", False),
    ],
)
def test_registry_check(value: str, ok: bool) -> None:
    """`system-default-registry` is host[:port][/path] without a scheme."""
    assert (check_registry(value) is None) is ok


def test_session_ttl_is_capped_by_the_setting() -> None:
    """0 asks for the session default; larger requests are capped; smaller ones kept."""
    assert session_ttl_ms(0, 960) == 960 * 60_000
    assert session_ttl_ms(10**12, 1) == 60_000
    assert session_ttl_ms(5000, 960) == 5000


def test_agent_command_uses_registry_and_ca_checksum() -> None:
    """The registration command pulls from the air-gap registry and pins the CA."""
    command = agent_command(
        server_url="https://r.test", token="tok", cacerts_pem="PEM", registry="reg.test:5000"
    )
    assert " reg.test:5000/rancher/rancher-agent:v" in command
    assert "--server https://r.test --token tok" in command
    assert "--ca-checksum " in command
    plain = agent_command(server_url="https://r.test", token="tok", cacerts_pem="", registry="")
    assert " rancher/rancher-agent:v" in plain and "--ca-checksum" not in plain


def test_node_health_checks_and_conditions() -> None:
    """Low disk or memory makes the node not Ready with the matching pressure condition."""
    healthy = [disk_check(50, 100), memory_check(2**30)]
    assert all(c.ok for c in healthy)
    assert conditions(healthy)[0]["status"] == "True"
    sick = [disk_check(5, 100), memory_check(2**20)]
    result = {c["type"]: c["status"] for c in conditions(sick)}
    assert result == {"Ready": "False", "DiskPressure": "True", "MemoryPressure": "True"}


def _kv(key: str, value: dict[str, object] | None, rev: int) -> KeyValue:
    return KeyValue(key, json.dumps(value).encode() if value is not None else b"", rev, rev, 1)


def test_event_record_on_put_and_delete() -> None:
    """A put event is about the new value; a delete event about the previous one, at the
    deletion's revision."""
    put = Event("put", _kv("/corral/clusters/c-1", {"name": "a"}, 5), None)
    record = event_record(put)
    assert record is not None and record.id == "c-1" and record.data == {"name": "a"}
    deleted = Event("delete", _kv("/corral/clusters/c-1", None, 7),
                    _kv("/corral/clusters/c-1", {"name": "a"}, 5))
    gone = event_record(deleted)
    assert gone is not None and gone.data == {"name": "a"} and gone.mod_revision == 7


def test_event_message_names_change_and_remove() -> None:
    """put → resource.change, delete → resource.remove, with the revision as a string."""
    from corral.server.events import EventKind

    async def render(*_: object) -> dict[str, object]:
        return {}

    kind = EventKind("clusters", "cluster", render, lambda p, r: True)
    put = Event("put", _kv("/corral/clusters/c-1", {}, 9), None)
    record = event_record(put)
    assert record is not None
    message = event_message(put, kind, record, {"id": "c-1"})
    assert message == {"name": "resource.change", "resourceType": "cluster", "revision": "9",
                       "data": {"id": "c-1"}}
    delete = Event("delete", _kv("/corral/clusters/c-1", None, 10), None)
    assert event_message(delete, kind, record, {})["name"] == "resource.remove"


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("0", 0), ("12", 12)])
def test_parse_revision(raw: str | None, expected: int | None) -> None:
    """`?revision=` is absent or a whole number."""
    assert parse_revision(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "x", "1.0"])
def test_parse_revision_rejects(raw: str) -> None:
    """Anything else is a 422."""
    with pytest.raises(InvalidQuery):
        parse_revision(raw)


def test_shell_frames_round_trip() -> None:
    """Frames are a channel digit and base64; resize carries Width/Height JSON."""
    assert encode_frame("1", b"hi\n") == "1" + base64.b64encode(b"hi\n").decode()
    assert decode_frame("0" + base64.b64encode(b"ls\r").decode()) == ("0", b"ls\r")
    assert decode_frame(b"0aGk=") == ("0", b"hi")
    payload = json.dumps({"Width": 120, "Height": 40}).encode()
    assert parse_resize(payload) == (120, 40)


@pytest.mark.parametrize("frame", ["", "9abc", "0!!!", "x"])
def test_shell_bad_frames(frame: str) -> None:
    """Unknown channels and broken base64 are FrameErrors."""
    with pytest.raises(FrameError):
        decode_frame(frame)


@pytest.mark.parametrize(
    "payload", [b"{}", b"[]", b"nope", b'{"Width":0,"Height":5}', b'{"Width":"a","Height":5}']
)
def test_shell_bad_resize(payload: bytes) -> None:
    """A resize needs two in-range integers."""
    with pytest.raises(FrameError):
        parse_resize(payload)


def test_openapi_describes_exactly_the_routes(tmp_path: Path) -> None:
    """Every API route and method appears in /v3/openapi.json, and nothing else does."""
    routes = api_routes(ServerContext(store=open_store("memory://"), data_dir=tmp_path))
    openapi = next(r for r in routes if isinstance(r, Route) and r.path == "/v3/openapi.json")
    assert isinstance(openapi.app, ApiEndpoint)

    import asyncio

    from starlette.requests import Request
    from starlette.responses import Response

    scope = {"type": "http", "method": "GET", "path": "/v3/openapi.json", "headers": [],
             "query_string": b""}
    handler = openapi.app.handlers["GET"]

    async def call() -> Response:
        return await handler(Request(scope))

    response = asyncio.run(call())
    document = json.loads(bytes(response.body))
    described = {(p, m) for p, ops in document["paths"].items() for m in ops}
    expected = set()
    for route in routes:
        if isinstance(route, Route) and isinstance(route.app, ApiEndpoint):
            if "{rest:path}" in route.path:
                continue
            expected |= {(route.path, m.lower()) for m in route.app.handlers}
        elif isinstance(route, WebSocketRoute):
            expected.add((route.path, "get"))
    assert described == expected
    login = document["paths"]["/v3-public/localProviders/local"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LoginInput"
    }
    assert "password" in document["components"]["schemas"]["LoginInput"]["properties"]
    assert login["security"] == []
