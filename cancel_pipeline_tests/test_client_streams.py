"""Concurrent page streams (`iter_order_pages(..., streams=N)`): slicing, completeness, errors, pacing.

The slicing is property-tested on its own; everything else runs the real client against the demo store
served over HTTP on 127.0.0.1, as a user would meet it. Nothing here is timed.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve
from hypothesis import given, settings
from hypothesis import strategies as st

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.errors import ShopifyRequestFailed
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.shopify.streams import MIN_PAGES_PER_SLICE, SLICES_PER_STREAM, plan_slices

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "demo-token"

pytestmark = pytest.mark.timeout(120)


@contextmanager
def served(**settings: Any) -> Iterator[tuple[DemoStore, FrozenClock, str]]:
    clock = FrozenClock(NOW)
    store = DemoStore(clock=clock, **settings)
    with serve(store) as base_url:
        yield store, clock, base_url


def client_for(base_url: str, **kwargs: Any) -> ShopifyClient:
    kwargs.setdefault("access_token", TOKEN)
    kwargs.setdefault("backoff_base", 0.01)
    return ShopifyClient(base_url, **kwargs)


def versions(pages: list[OrderPage]) -> list[tuple[int, str]]:
    return [(order["id"], order["updated_at"]) for page in pages for order in page.orders()]


def stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("shopify-")]


# -- slicing ------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(min_value=1_700_000_000, max_value=1_800_000_000),
    fraction=st.floats(min_value=0, max_value=0.999),
    span_s=st.integers(min_value=0, max_value=90 * 86_400),
    orders=st.integers(min_value=0, max_value=2_000_000),
    limit=st.integers(min_value=1, max_value=250),
    streams=st.integers(min_value=1, max_value=16),
)
def test_slices_cover_the_span_exactly_with_shared_boundary_seconds(
    start: int, fraction: float, span_s: int, orders: int, limit: int, streams: int
) -> None:
    begin = datetime.fromtimestamp(start + fraction, UTC)
    end = datetime.fromtimestamp(start + span_s + fraction, UTC)
    slices = plan_slices(begin, end, orders=orders, limit=limit, streams=streams)

    assert slices[0].start == begin and slices[-1].end == end
    assert [piece.index for piece in slices] == list(range(len(slices)))
    pages = math.ceil(orders / limit)
    assert len(slices) <= max(1, min(streams * SLICES_PER_STREAM, pages // MIN_PAGES_PER_SLICE, span_s))
    if streams == 1 or pages < 2 * MIN_PAGES_PER_SLICE or span_s < 2:
        assert len(slices) == 1
    for before, after in itertools.pairwise(slices):
        # Inclusive bounds that meet: every second of the span lies in a slice, the shared one in two.
        assert before.end == after.start
        assert after.start.timestamp() == int(after.start.timestamp())  # whole seconds inside the span
        assert after.start.timestamp() - math.floor(before.start.timestamp()) >= 1  # never empty
    # Each slice is worth its extra partial page: at least MIN_PAGES_PER_SLICE pages on average.
    if len(slices) > 1:
        assert pages / len(slices) >= MIN_PAGES_PER_SLICE


def test_a_small_span_stays_one_stream_and_costs_one_count() -> None:
    window = {"updated_at_min": NOW - timedelta(hours=2), "updated_at_max": NOW}
    with served() as (store, _, base_url), client_for(base_url) as client:
        single = list(client.iter_order_pages(status="any", **window))
        before = client.stats.requests
        multi = list(client.iter_order_pages(status="any", streams=4, **window))
        assert versions(multi) == versions(single)
        assert [p.request_path for p in multi] == [p.request_path for p in single]
        assert client.stats.requests - before == len(single) + 1  # the count that sized the split
        assert store.stats()["throttled"] == 0


# -- completeness over real HTTP ----------------------------------------------------------------------------


def test_streams_return_the_versions_one_stream_does_including_boundaries_and_a_burst() -> None:
    """Orders updated exactly on slice boundaries, a 300-order burst in a boundary second, and at the span's
    edges are all there; the only extra copies are orders of shared boundary seconds."""
    limit, streams = 20, 4
    span = {"updated_at_min": NOW - timedelta(days=3), "updated_at_max": NOW}
    with served(orders_per_hour=100, bucket_size=400, leak_rate=1000.0) as (store, clock, base_url):
        orders = store.count_orders(status="any", **span)
        # Enough pages that the split is capped by the streams, so the orders added below cannot move it.
        assert math.ceil(orders / limit) // MIN_PAGES_PER_SLICE >= streams * SLICES_PER_STREAM
        slices = plan_slices(
            span["updated_at_min"], span["updated_at_max"], orders=orders, limit=limit, streams=4
        )
        assert len(slices) == streams * SLICES_PER_STREAM
        boundaries = [piece.start for piece in slices[1:]]
        placed: list[int] = []
        for moment in [span["updated_at_min"], *boundaries, span["updated_at_max"]]:
            clock.set(moment)
            placed.append(store.create_order()["id"])
        clock.set(boundaries[len(boundaries) // 2])
        placed.extend(store.create_order("pos")["id"] for _ in range(300))
        clock.set(NOW)

        with client_for(base_url, bucket_size=400, leak_rate=1000.0) as client:
            single = list(client.iter_order_pages(status="any", limit=limit, **span))
            single_requests = client.stats.requests
            client.reset_stats()
            multi = list(client.iter_order_pages(status="any", limit=limit, streams=streams, **span))

        expected = {(order["id"], order["updated_at"]) for order in store.orders(status="any", **span)}
        assert set(versions(single)) == expected
        assert set(versions(multi)) == expected
        assert set(placed) <= {order_id for order_id, _ in versions(multi)}

        # Copies come only from boundary seconds; extra requests are one count and at most one partial page
        # (plus one for a boundary's copies) per slice.
        boundary_seconds = {int(moment.timestamp()) for moment in boundaries}
        copies = len(versions(multi)) - len(expected)
        assert copies >= 300
        on_boundaries = [o for p in multi for o in p.orders() if _epoch(o["updated_at"]) in boundary_seconds]
        assert copies <= len(on_boundaries) // 2 + 1
        assert client.stats.requests <= single_requests + 1 + 2 * len(slices)
        assert client.stats.requests == len(multi) + 1 and client.stats.retries == 0

        # Pages: numbered 1..n in arrival order; each names the first request of its slice.
        assert [page.page_number for page in multi] == list(range(1, len(multi) + 1))
        assert all("updated_at_min=" in page.request_path for page in multi)
        assert {page.request_path for page in multi} == {
            _first_path(limit, piece.start, piece.end) for piece in slices
        }
        assert client.stats.bytes_received >= sum(len(page.body) for page in multi)
        assert store.stats()["throttled"] == 0
    assert not stream_threads()


def _epoch(shop_time: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(shop_time).timestamp())
    except (TypeError, ValueError):  # the store serves a few malformed orders on purpose
        return None


def _first_path(limit: int, start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%dT%H%%3A%M%%3A%SZ"
    return (
        f"/admin/api/2026-07/orders.json?status=any&limit={limit}"
        f"&updated_at_min={start.astimezone(UTC).strftime(fmt)}&updated_at_max={end.astimezone(UTC).strftime(fmt)}"
    )


# -- errors and early close ---------------------------------------------------------------------------------


def test_an_error_in_one_stream_is_raised_and_stops_every_worker() -> None:
    span = {"updated_at_min": NOW - timedelta(days=2), "updated_at_max": NOW}
    with served(bucket_size=400, leak_rate=1000.0) as (store, _, base_url):
        # The first follow-up page of any slice fails, and the client may not retry it.
        store.fail_next({"status": 503, "page_info_only": True})
        with client_for(base_url, bucket_size=400, leak_rate=1000.0, max_retries=0) as client:
            pages = client.iter_order_pages(status="any", limit=10, streams=4, **span)
            with pytest.raises(ShopifyRequestFailed) as caught:
                for _ in pages:
                    pass
        assert caught.value.status == 503 and TOKEN not in str(caught.value)
        assert not stream_threads()
        served_before = store.stats()["admin_requests"]
    assert store.stats()["admin_requests"] == served_before


def test_closing_the_iterator_early_stops_the_workers() -> None:
    span = {"updated_at_min": NOW - timedelta(days=2), "updated_at_max": NOW}
    with (
        served(bucket_size=400, leak_rate=1000.0) as (store, _, base_url),
        client_for(base_url, bucket_size=400, leak_rate=1000.0) as client,
    ):
        total = client.count_orders(status="any", **span)
        pages = client.iter_order_pages(status="any", limit=10, streams=4, **span)
        first = [next(pages) for _ in range(3)]
        assert stream_threads()
        pages.close()
        assert not stream_threads()
        assert [page.page_number for page in first] == [1, 2, 3]
        # Workers ran at most a bounded queue's worth ahead of the consumer, not through the span.
        assert client.stats.requests < total / 10
        assert client.stats.requests == store.stats()["admin_requests"]


# -- pacing: no 429 under the real buckets --------------------------------------------------------------------


@pytest.mark.parametrize(("bucket_size", "leak_rate", "requests"), [(40, 2.0, 70), (400, 20.0, 480)])
def test_four_streams_cross_the_plans_bucket_without_a_429(
    bucket_size: int, leak_rate: float, requests: int
) -> None:
    """More requests than the bucket holds, so the streams must share the leak; the store counts 429s."""
    with served(bucket_size=bucket_size, leak_rate=leak_rate) as (store, _, base_url):
        span = {"updated_at_min": NOW - timedelta(days=1), "updated_at_max": NOW}
        limit = store.count_orders(status="any", **span) // requests  # about `requests` pages
        with client_for(base_url, bucket_size=bucket_size, leak_rate=leak_rate) as client:
            pages = list(client.iter_order_pages(status="any", limit=limit, streams=4, **span))
        assert client.stats.requests >= requests > bucket_size
        assert store.stats()["throttled"] == 0 and client.stats.throttled_429 == 0
        assert client.stats.rate_limit_wait_s > 0  # the bucket did fill: the leak set the pace
        assert client.stats.requests == len(pages) + 1 == store.stats()["admin_requests"]
    assert not stream_threads()
