"""What the Shopify client hands back: one fetched page of orders, and the client's running counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson


@dataclass(frozen=True)
class OrderPage:
    """One page of `GET orders.json`, kept verbatim so raw assets can land exactly what Shopify sent."""

    page_number: int
    """1-based position of this page within one iteration."""
    request_path: str
    """Path and query of the request that produced the page (credentials travel in headers, never here)."""
    api_version: str
    """The version Shopify answered with (`X-Shopify-API-Version`), else the configured one."""
    fetched_at: datetime
    """When the response arrived, timezone-aware UTC."""
    body: bytes
    """The response body verbatim: `{"orders": [...]}`."""
    order_count: int

    def orders(self) -> list[dict]:
        """The order objects of the page, parsed on demand so callers that land raw bytes never pay for it."""
        return orjson.loads(self.body)["orders"]


@dataclass
class ClientStats:
    """Cumulative counters since the client was created (or its stats were reset)."""

    requests: int = 0
    """HTTP requests sent, retries and token exchanges included."""
    retries: int = 0
    """Requests sent again after a 429, a 5xx, a timeout, a reset or a truncated body."""
    throttled_429: int = 0
    rate_limit_wait_s: float = 0.0
    """Seconds spent waiting for the leaky bucket or a `Retry-After`, not backoff after failures."""
    bytes_received: int = 0
