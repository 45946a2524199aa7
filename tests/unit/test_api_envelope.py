"""The v3 wire shapes: base URL from forwarded headers, links, pagination, filters, envelopes."""

from __future__ import annotations

import pytest

from corral.server.api.envelope import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Links,
    collection_body,
    error_body,
    filter_items,
    page_url,
    paginate,
    parse_limit,
    resource_links,
)
from corral.server.api.envelope import (
    base_url as make_base_url,
)


@pytest.mark.parametrize(
    ("scheme", "headers", "server", "expected"),
    [
        ("http", {"host": "rancher.example.com"}, None, "http://rancher.example.com"),
        ("https", {"host": "rancher.example.com:8443"}, None, "https://rancher.example.com:8443"),
        # NGINX: Host $host has no port, X-Forwarded-Port names it
        (
            "http",
            {"host": "fqdn.test", "x-forwarded-proto": "https", "x-forwarded-port": "8443"},
            None,
            "https://fqdn.test:8443",
        ),
        # the default port of the forwarded scheme is left out
        (
            "http",
            {"host": "fqdn.test", "x-forwarded-proto": "https", "x-forwarded-port": "443"},
            None,
            "https://fqdn.test",
        ),
        # corral lb: Host keeps the port the client used; X-Forwarded-Port is not added twice
        (
            "http",
            {"host": "127.0.0.1:9443", "x-forwarded-proto": "https", "x-forwarded-port": "9443"},
            None,
            "https://127.0.0.1:9443",
        ),
        # X-Forwarded-Host wins over Host; only the first of comma-joined values counts
        (
            "http",
            {
                "host": "internal:80",
                "x-forwarded-host": "public.test, other",
                "x-forwarded-proto": "https, http",
            },
            None,
            "https://public.test",
        ),
        ("ws", {"host": "h.test"}, None, "http://h.test"),
        ("wss", {"host": "h.test", "x-forwarded-proto": "wss"}, None, "https://h.test"),
        # a nonsense X-Forwarded-Proto is ignored
        ("https", {"host": "h.test", "x-forwarded-proto": "gopher"}, None, "https://h.test"),
        # a forged Host with path characters falls back to the socket address
        ("http", {"host": "evil/x"}, ("10.0.0.1", 8080), "http://10.0.0.1:8080"),
        ("http", {}, ("::1", 80), "http://[::1]"),
        ("https", {"host": "[::1]:8443"}, None, "https://[::1]:8443"),
        ("http", {"host": "MiXeD.Test"}, None, "http://mixed.test"),
    ],
)
def test_base_url(
    scheme: str, headers: dict[str, str], server: tuple[str, int] | None, expected: str
) -> None:
    """The base URL is the one the client used, from forwarded headers when present."""
    assert make_base_url(scheme, headers, server) == expected


def test_links_percent_encode_ids_but_keep_colons() -> None:
    """Item links encode unsafe characters; `c-x:default-token` keeps its colon."""
    links = Links("https://h.test")
    assert links.item("clusterregistrationtokens", "c-x:default-token") == (
        "https://h.test/v3/clusterregistrationtokens/c-x:default-token"
    )
    assert links.item("users", "a b") == "https://h.test/v3/users/a%20b"
    assert links.collection("localProviders", public=True) == (
        "https://h.test/v3-public/localProviders"
    )


def test_resource_links_only_offer_what_is_allowed() -> None:
    """`update`/`remove` appear only when the caller may use them."""
    links = Links("https://h.test")
    assert resource_links(links, "users", "u-1", update=False, remove=False) == {
        "self": "https://h.test/v3/users/u-1"
    }
    both = resource_links(links, "users", "u-1", update=True, remove=True)
    assert both["update"] == both["remove"] == both["self"]


def _items(*ids: str) -> list[dict[str, str]]:
    return [{"id": i, "type": "thing"} for i in ids]


def test_paginate_walks_every_item_once() -> None:
    """Following next markers visits every item exactly once, in id order."""
    items = _items(*[f"id-{n:02d}" for n in range(7)][::-1])
    seen: list[str] = []
    marker = None
    while True:
        page = paginate(items, 3, marker)
        assert page.total == 7
        seen += [i["id"] for i in page.items]
        if page.next_marker is None:
            break
        marker = page.next_marker
    assert seen == sorted(i["id"] for i in items)


def test_paginate_marker_survives_deleted_item() -> None:
    """A marker whose item was deleted meanwhile continues with the next id."""
    page = paginate(_items("a", "b", "c", "d"), 2, None)
    assert page.next_marker == "c"
    later = paginate(_items("a", "b", "d"), 2, page.next_marker)
    assert [i["id"] for i in later.items] == ["d"]
    assert later.next_marker is None


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, DEFAULT_LIMIT), ("", DEFAULT_LIMIT), ("5", 5), ("1", 1)]
)
def test_parse_limit(raw: str | None, expected: int) -> None:
    """`?limit=` defaults and parses."""
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "x", str(MAX_LIMIT + 1), "1.5"])
def test_parse_limit_rejects(raw: str) -> None:
    """Bad limits are errors that say what is allowed."""
    with pytest.raises(ValueError, match="limit"):
        parse_limit(raw)


def test_filter_items_by_fields() -> None:
    """Non-control query parameters filter by field equality; booleans compare as JSON."""
    items = [
        {"id": "1", "enabled": True, "name": "a"},
        {"id": "2", "enabled": False, "name": "a"},
        {"id": "3", "enabled": True, "name": "b"},
    ]
    query = [("enabled", "true"), ("name", "a"), ("limit", "5"), ("marker", "0")]
    assert [i["id"] for i in filter_items(items, query)] == ["1"]
    assert [i["id"] for i in filter_items(items, [("missing", "x")])] == []
    assert len(filter_items(items, [("limit", "1")])) == 3


def test_page_url_keeps_filters_and_replaces_paging() -> None:
    """The next link repeats the filters and carries the new limit and marker."""
    url = page_url("https://h/v3/users", [("enabled", "true"), ("marker", "old")], 2, "u-x")
    assert url == "https://h/v3/users?enabled=true&limit=2&marker=u-x"


def test_collection_body_shape() -> None:
    """The collection envelope has type, resourceType, links, pagination, data, revision."""
    page = paginate(_items("a", "b", "c"), 2, None)
    body = collection_body(
        resource_type="thing", self_url="https://h/v3/things", page=page, query=[],
        revision=42, create_url="https://h/v3/things",
    )
    assert body["type"] == "collection"
    assert body["resourceType"] == "thing"
    assert body["links"]["self"] == "https://h/v3/things"
    assert body["links"]["next"] == "https://h/v3/things?limit=2&marker=c"
    assert body["pagination"] == {
        "limit": 2, "total": 3, "next": "https://h/v3/things?limit=2&marker=c", "marker": "c"
    }
    assert [i["id"] for i in body["data"]] == ["a", "b"]
    assert body["revision"] == "42"
    assert body["createTypes"] == {"thing": "https://h/v3/things"}


def test_last_page_has_no_next() -> None:
    """The last page's `next` is null and there is no next link."""
    body = collection_body(
        resource_type="thing", self_url="u", page=paginate(_items("a"), 5, None), query=[]
    )
    assert body["pagination"]["next"] is None
    assert "next" not in body["links"]
    assert "revision" not in body


def test_error_body() -> None:
    """Errors are `{"type":"error","status","code","message"}`."""
    assert error_body(404, "NotFound", "no") == {
        "type": "error", "status": 404, "code": "NotFound", "message": "no"
    }
