"""DemoStore: the seeded order book, its auth, rate limit, faults and counters, served as a WSGI app."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import api
from .auth import TokenRegistry
from .clock import Clock, system_clock
from .faults import FaultInjector
from .graphql_api import GraphQLService
from .orders import OrderBook
from .query import OrderFilter, parse_filter
from .ratelimit import LeakyBucket
from .settings import DemoStoreSettings
from .stats import RequestStats


class DemoStore:
    """A faithful simulator of Shopify's REST and GraphQL Admin APIs for orders, whose history unfolds along `clock`.

    Call it as a WSGI application (in process through httpx.WSGITransport, or over HTTP with `serve`).
    Settings may be given whole or as keyword overrides, e.g. DemoStore(seed=3, bucket_size=400).
    """

    def __init__(
        self,
        settings: DemoStoreSettings | None = None,
        *,
        clock: Clock | None = None,
        faults: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = dataclasses.replace(settings or DemoStoreSettings(), **overrides)
        s = self.settings
        self.clock: Clock = clock or system_clock
        self.tz = ZoneInfo(s.shop_timezone)
        self.book = OrderBook(s)
        self.tokens = TokenRegistry(s.access_token, s.client_id, s.client_secret, s.token_expires_in)
        self.bucket = LeakyBucket(s.bucket_size, s.leak_rate)
        self.faults = FaultInjector(seed=s.seed, **(faults or {}))
        self.request_stats = RequestStats()
        self.graphql = GraphQLService(self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return api.application(self, environ, start_response)

    def now(self) -> int:
        """The store's current time as UTC epoch seconds."""
        return int(self.clock().timestamp())

    # -- reading, as the API would answer at the store's current time -----------------------------------

    def get_order(self, order_id: int) -> dict[str, Any] | None:
        """The order JSON (as inside {"order": ...}), or None when it does not exist now."""
        match = self.book.get(order_id, self.now())
        return self.book.render(match) if match else None

    def orders(self, **params: str | datetime) -> list[dict[str, Any]]:
        """Every order matching orders.json-style filters (status defaults to open), newest first."""
        f = self._filter(params)
        matches = sorted(self.book.matches(f, self.now()), key=lambda m: (m[0].created, m[0].id))
        return [self.book.render(m) for m in reversed(matches)]

    def count_orders(self, **params: str | datetime) -> int:
        """What orders/count.json answers for these filters."""
        return self.book.count(self._filter(params), self.now())

    def _filter(self, params: dict[str, str | datetime]) -> OrderFilter:
        text = {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in params.items()}
        return parse_filter(text, self.tz)

    # -- changes ---------------------------------------------------------------------------------------

    def cancel_order(self, order_id: int, reason: str | None = None) -> dict[str, Any]:
        """Cancel now, as POST orders/{id}/cancel.json does; raises OrderError (status 404 or 422)."""
        return self.book.render(self.book.cancel(order_id, reason, self.now()))

    def fulfill_order(self, order_id: int) -> dict[str, Any]:
        """Fulfil every open unit now; raises OrderError (404, or 422 when canceled or nothing is open)."""
        return self.book.render(self.book.fulfill(order_id, self.now()))

    def create_order(
        self,
        source_name: str = "web",
        *,
        test: bool = False,
        financial_status: str = "paid",
        quantities: tuple[int, ...] = (1,),
        tags: str = "",
    ) -> dict[str, Any]:
        """Place a new order at the current time and return its JSON."""
        match = self.book.create(
            self.now(),
            source_name=source_name,
            test=test,
            financial_status=financial_status,
            quantities=quantities,
            tags=tags,
        )
        return self.book.render(match)

    # -- faults and counters -----------------------------------------------------------------------------

    def set_faults(self, **knobs: Any) -> None:
        """Set error_rate, truncate_rate, latency, fail_next, bulk_fail_next, download_fail_next (faults.py)."""
        self.faults.configure(**knobs)

    def fail_next(self, *specs: dict[str, Any]) -> None:
        """Queue one-shot faults, e.g. fail_next({"status": 503}, {"truncate": True, "page_info_only": True})."""
        self.faults.fail_next(*specs)

    def stats(self) -> dict[str, Any]:
        """Requests served, admin requests, 429s sent and counts by status (as GET /_demo/stats)."""
        return self.request_stats.snapshot()

    def reset_counters(self) -> None:
        """Zero the counters, empty the REST rate-limit buckets and refill the GraphQL points bucket."""
        self.request_stats.reset()
        self.bucket.reset()
        self.graphql.bucket.reset()
