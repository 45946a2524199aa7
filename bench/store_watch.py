"""Watch latency across servers: a write through server A until its event arrives on a
`/v3/subscribe` WebSocket held on server B.

Writes go one at a time (the next after the previous event arrived), so a sample is one write's
trip: A's API, the store, B's watch, B's event rendering, the WebSocket. Each write sets the
`ui-pl` setting to a fresh value; the event carrying that value ends its sample.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import websockets

from bench.processes import BenchError

SETTING = "ui-pl"
EVENT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WatchLatency:
    """The samples of one measurement, in milliseconds."""

    samples_ms: list[float]

    def percentile(self, q: float) -> float:
        """The q-th percentile (nearest rank) of the samples."""
        ordered = sorted(self.samples_ms)
        if not ordered:
            return float("nan")
        rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank]


async def _measure(write_url: str, watch_url: str, token: str, count: int,
                   warmup: int) -> WatchLatency:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
    arrived: dict[str, asyncio.Future[float]] = {}
    target = urlsplit(write_url)
    client = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=15)
    put_headers = {**headers, "Content-Type": "application/json"}
    # subscribe from the listing's revision: a write made while the subscription is still
    # being set up is replayed, not missed
    client.request("GET", "/v3/settings", headers=headers)
    listing = client.getresponse()
    revision = json.loads(listing.read()).get("revision")
    if listing.status != 200 or revision is None:
        raise BenchError(f"GET /v3/settings answered {listing.status} without a revision")
    subscribe = (watch_url.replace("http://", "ws://", 1)
                 + f"/v3/subscribe?resourceTypes=setting&revision={revision}")

    def put(value: str) -> tuple[int, str]:
        client.request("PUT", f"/v3/settings/{SETTING}", json.dumps({"value": value}),
                       put_headers)
        response = client.getresponse()
        return response.status, response.read().decode(errors="replace")

    async with websockets.connect(subscribe, additional_headers=headers) as ws:

        async def read() -> None:
            async for raw in ws:
                message = json.loads(raw)
                value = message.get("data", {}).get("value")
                future = arrived.get(value) if message.get("name") == "resource.change" else None
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

        reader = asyncio.create_task(read())
        samples: list[float] = []
        try:
            for number in range(warmup + count):
                value = f"bench-{time.time_ns()}-{number}"
                arrived[value] = asyncio.get_running_loop().create_future()
                sent = time.perf_counter()
                status, text = await asyncio.to_thread(put, value)  # keep-alive connection
                if status != 200:
                    raise BenchError(f"PUT /v3/settings/{SETTING} answered {status} "
                                     f"{text[:200]!r}")
                try:
                    got = await asyncio.wait_for(arrived[value], EVENT_TIMEOUT_S)
                except TimeoutError:
                    raise BenchError(f"no event for write {number} within "
                                     f"{EVENT_TIMEOUT_S:.0f}s on {watch_url}") from None
                del arrived[value]
                if number >= warmup:
                    samples.append((got - sent) * 1000)
        finally:
            reader.cancel()
            client.close()
    return WatchLatency(samples)


def measure_watch_latency(write_url: str, watch_url: str, token: str, count: int,
                          warmup: int = 10) -> WatchLatency:
    """`count` samples (after `warmup` unmeasured ones) of write-through-A → event-on-B."""
    try:
        return asyncio.run(_measure(write_url, watch_url, token, count, warmup))
    except (OSError, websockets.WebSocketException, http.client.HTTPException) as exc:
        raise BenchError(f"watch latency ({write_url} → {watch_url}): {exc}") from exc
