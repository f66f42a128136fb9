"""Shared support (no tests here) for the Shopify client tests: a manual clock and an in-process order server.

The server is an `httpx.MockTransport` handler that behaves like Shopify's `orders.json` (cursor pages with
a `Link` header, a leaky bucket with 429s); the client under test is always the real `ShopifyClient`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx

TOKEN = "shpat_unit_secret_0123456789abcdef"


class ManualTime:
    """A monotonic clock that only moves when the client sleeps (or the server spends time)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record the sleep and move time forward by it."""
        self.sleeps.append(seconds)
        self.now += seconds


def orders_json(orders: list[dict]) -> bytes:
    """A `GET orders.json` body."""
    return json.dumps({"orders": orders}).encode()


class PagedOrders:
    """Serves `total` orders as cursor pages and remembers every request it saw.

    Optional `bucket` = (size, leak_rate) adds a leaky bucket on `time` with Shopify's header and 429s;
    `latency` is the server time spent per request (moves `time`).
    """

    def __init__(
        self,
        total: int,
        *,
        time: ManualTime | None = None,
        bucket: tuple[int, float] | None = None,
        latency: float = 0.0,
        base_url: str = "https://unit-shop.myshopify.com",
    ) -> None:
        self.orders = [{"id": 1_000 + i, "updated_at": "2024-01-01T00:00:00-05:00"} for i in range(total)]
        self.time = time
        self.bucket = bucket
        self.latency = latency
        self.base_url = base_url
        self.requests: list[httpx.Request] = []
        self.throttled = 0
        self._level = 0.0
        self._level_at = time.now if time else 0.0
        self.before: Callable[[httpx.Request], httpx.Response | None] | None = None
        """Hook run first for each request; a response it returns is served instead."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.before is not None and (early := self.before(request)) is not None:
            return early
        headers: dict[str, str] = {"X-Shopify-API-Version": "2024-01"}
        if self.bucket is not None:
            assert self.time is not None
            size, leak = self.bucket
            now = self.time.now
            self._level = max(0.0, self._level - (now - self._level_at) * leak)
            self._level_at = now
            if self._level + 1 > size:
                self.throttled += 1
                return httpx.Response(
                    429,
                    headers={"Retry-After": "1.0", "X-Shopify-Shop-Api-Call-Limit": f"{size}/{size}"},
                    json={"errors": "Exceeded 2 calls per second for api client."},
                )
            self._level += 1
            # Shopify reports whole requests; rounding down is the direction that could mislead a client.
            headers["X-Shopify-Shop-Api-Call-Limit"] = f"{int(self._level)}/{size}"
        if self.time is not None:
            self.time.now += self.latency
        query = parse_qs(request.url.query.decode())
        limit = int(query.get("limit", ["50"])[0])
        if "page_info" in query:
            offset = json.loads(base64.urlsafe_b64decode(query["page_info"][0]))["offset"]
        else:
            offset = 0
        chunk = self.orders[offset : offset + limit]
        if offset + limit < len(self.orders):
            cursor = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
            next_url = f"{self.base_url}{request.url.path}?limit={limit}&page_info={cursor}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return httpx.Response(200, headers=headers, content=orders_json(chunk))
