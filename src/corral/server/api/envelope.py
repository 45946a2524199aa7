"""The v3 wire shapes, without I/O: base URL from forwarded headers, links, collection and
error envelopes, pagination with a continuation marker, field filters."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_LIMIT = 1000  # items per page when the client does not say (Rancher's default)
MAX_LIMIT = 10000
DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters that steer a listing; every other parameter is a field filter.
CONTROL_PARAMS = frozenset({"limit", "marker", "sort", "order", "action", "me"})

_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(:\d{1,5})?$")


def _first(value: str | None) -> str:
    """The first entry of a possibly comma-joined forwarded header, trimmed."""
    return (value or "").split(",")[0].strip()


def base_url(
    scheme: str, headers: Mapping[str, str], server: tuple[str, int | None] | None = None
) -> str:
    """`scheme://host[:port]` the client used: X-Forwarded-Proto / X-Forwarded-Host / Host,
    plus X-Forwarded-Port when the host carries no port and the port is not the default.

    `headers` maps lower-case names to values; `scheme` is the ASGI scope scheme.
    """
    proto = _first(headers.get("x-forwarded-proto")).lower() or scheme
    proto = {"ws": "http", "wss": "https"}.get(proto, proto)
    if proto not in DEFAULT_PORTS:
        proto = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = _first(headers.get("x-forwarded-host")) or headers.get("host", "").strip()
    if not _HOST_RE.match(host):
        host = ""
    if not host:
        if server is None:
            host = "localhost"
        else:
            name, port_number = server
            host = f"[{name}]" if ":" in name else name
            if port_number is not None and port_number != DEFAULT_PORTS.get(proto):
                host += f":{port_number}"
    has_port = host.rsplit("]", 1)[-1].find(":") >= 0
    forwarded_port = _first(headers.get("x-forwarded-port"))
    if (
        not has_port
        and forwarded_port.isdigit()
        and int(forwarded_port) != DEFAULT_PORTS.get(proto)
    ):
        host += f":{int(forwarded_port)}"
    return f"{proto}://{host.lower()}"


@dataclass(frozen=True, slots=True)
class Links:
    """Absolute URLs of collections and resources under one base URL."""

    base: str

    def collection(self, name: str, *, public: bool = False) -> str:
        """`<base>/v3/<name>` (or `/v3-public/<name>`)."""
        return f"{self.base}/{'v3-public' if public else 'v3'}/{name}"

    def item(self, collection: str, item_id: str) -> str:
        """`<base>/v3/<collection>/<id>` with the id percent-encoded."""
        return f"{self.collection(collection)}/{quote(item_id, safe=':')}"

    def action(self, url: str, action: str) -> str:
        """`<url>?action=<action>`."""
        return f"{url}?action={quote(action)}"


def resource_links(
    links: Links, collection: str, item_id: str, *, update: bool, remove: bool
) -> dict[str, str]:
    """The standard `links` of a resource: `self`, plus `update`/`remove` when allowed."""
    url = links.item(collection, item_id)
    out = {"self": url}
    if update:
        out["update"] = url
    if remove:
        out["remove"] = url
    return out


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """`{"type":"error","status":N,"code":…,"message":…}`."""
    return {"type": "error", "status": status, "code": code, "message": message}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: its items, the total before paging, and where the next starts."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    next_marker: str | None


def parse_limit(raw: str | None) -> int:
    """`?limit=` as an int in 1..MAX_LIMIT (DEFAULT_LIMIT when absent); ValueError otherwise."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"limit must be a whole number, got {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def paginate(items: Sequence[dict[str, Any]], limit: int, marker: str | None) -> Page:
    """Items sorted by `id`, starting at the first id >= `marker`, at most `limit` of them.

    The next marker is the id of the first item of the following page (stable while items
    are added or removed between requests: no item is skipped or repeated).
    """
    ordered = sorted(items, key=lambda item: str(item["id"]))
    start = 0
    if marker:
        ids = [str(item["id"]) for item in ordered]
        start = bisect.bisect_left(ids, marker)
    chunk = ordered[start : start + limit]
    following = ordered[start + limit : start + limit + 1]
    return Page(
        items=chunk,
        total=len(ordered),
        limit=limit,
        next_marker=str(following[0]["id"]) if following else None,
    )


def filter_items(
    items: Iterable[dict[str, Any]], query: Iterable[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Keep items whose top-level fields equal every non-control query parameter
    (booleans and numbers compare by their JSON text: `?enabled=true`)."""
    wanted = [(k, v) for k, v in query if k not in CONTROL_PARAMS]
    if not wanted:
        return list(items)

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return [item for item in items if all(k in item and text(item[k]) == v for k, v in wanted)]


def page_url(self_url: str, query: Iterable[tuple[str, str]], limit: int, marker: str) -> str:
    """The collection URL with the same filters and `limit`/`marker` set for the next page."""
    kept = [(k, v) for k, v in query if k not in ("limit", "marker")]
    return f"{self_url}?{urlencode([*kept, ('limit', str(limit)), ('marker', marker)])}"


def collection_body(
    *,
    resource_type: str,
    self_url: str,
    page: Page,
    query: Sequence[tuple[str, str]],
    revision: int | None = None,
    create_url: str | None = None,
) -> dict[str, Any]:
    """The collection envelope around one page; `revision` is the store revision the listing
    was read at (subscribe with it to miss nothing)."""
    links: dict[str, str] = {"self": self_url}
    next_url = page_url(self_url, query, page.limit, page.next_marker) if page.next_marker else None
    if next_url:
        links["next"] = next_url
    body: dict[str, Any] = {
        "type": "collection",
        "resourceType": resource_type,
        "links": links,
        "createTypes": {resource_type: create_url} if create_url else {},
        "pagination": {"limit": page.limit, "total": page.total, "next": next_url},
        "data": page.items,
    }
    if page.next_marker:
        body["pagination"]["marker"] = page.next_marker
    if revision is not None:
        body["revision"] = str(revision)
    return body
