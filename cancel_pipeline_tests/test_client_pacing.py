"""Pacing and backoff of the Shopify client, on a manual clock (nothing here really sleeps)."""

from __future__ import annotations

import random

import httpx
import pytest

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.rate_limit import (
    LeakyBucket,
    backoff_delay,
    parse_call_limit,
    parse_retry_after,
)
from cancel_pipeline_tests.test_client_support import TOKEN, ManualTime, PagedOrders


def make_client(server: PagedOrders, time: ManualTime, **kwargs) -> ShopifyClient:
    return ShopifyClient(
        "unit-shop",
        access_token=TOKEN,
        transport=httpx.MockTransport(server),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(1),
        **kwargs,
    )


def test_call_limit_and_retry_after_headers_parse() -> None:
    assert parse_call_limit("32/40") == (32, 40)
    assert parse_call_limit(" 400 / 400 ") == (400, 400)
    assert parse_call_limit(None) is None
    assert parse_call_limit("garbage") is None
    assert parse_call_limit("3/0") is None
    assert parse_retry_after("2.0") == 2.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_bucket_allows_a_burst_then_waits_one_leak_interval() -> None:
    time = ManualTime()
    bucket = LeakyBucket(40, 2.0, headroom=1, clock=time.clock)
    for _ in range(39):
        assert bucket.delay() == 0
        bucket.record_request()
    assert bucket.delay() == pytest.approx(0.5)
    time.now += 0.5
    assert bucket.delay() == pytest.approx(0.0)


def test_bucket_follows_the_server_count_from_the_send_time() -> None:
    time = ManualTime()
    bucket = LeakyBucket(40, 2.0, headroom=1, clock=time.clock)
    sent_at = time.now
    time.now += 0.2
    bucket.sync(39, 40, observed_at=sent_at)
    # 39 at send time, 0.4 leaked since: 38.6 in the bucket, one more fits under 39 after 0.3 s.
    assert bucket.level() == pytest.approx(38.6)
    assert bucket.delay() == pytest.approx(0.3)
    bucket.sync(10, 400, observed_at=time.now)
    assert bucket.size == 400 and bucket.delay() == 0


def test_bucket_after_429_is_full() -> None:
    time = ManualTime()
    bucket = LeakyBucket(40, 2.0, headroom=1, clock=time.clock)
    bucket.mark_full()
    assert bucket.level() == 40
    assert bucket.wait_for_throttle() == pytest.approx(1.0)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(3)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0), (60, 30.0)]:
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, not a fixed schedule


@pytest.mark.parametrize(("size", "leak"), [(40, 2.0), (400, 20.0)])
def test_long_walk_runs_at_the_leak_rate_without_429(size: int, leak: float) -> None:
    """A walk several buckets long never overflows the server's bucket, yet keeps it nearly full."""
    time = ManualTime()
    pages = size * 4
    server = PagedOrders(pages, time=time, bucket=(size, leak), latency=0.3 / leak)
    client = make_client(server, time, bucket_size=size, leak_rate=leak)
    started = time.now
    seen = [page.order_count for page in client.iter_order_pages(limit=1)]
    assert len(seen) == pages and server.throttled == 0 and client.stats.throttled_429 == 0
    assert client.stats.requests == pages
    # Beyond the initial burst (size - headroom requests) the client must keep pace with the leak.
    steady_requests = pages - (size - 1)
    elapsed = time.now - started
    assert steady_requests / elapsed >= 0.95 * leak
    assert client.stats.rate_limit_wait_s > 0
    assert client.stats.rate_limit_wait_s == pytest.approx(sum(time.sleeps))


def test_configured_bucket_too_large_is_corrected_by_the_header() -> None:
    """Configured for Plus against a Standard store: after the first 429 the header size takes over."""
    time = ManualTime()
    server = PagedOrders(200, time=time, bucket=(40, 2.0), latency=0.05)
    client = make_client(server, time, bucket_size=400, leak_rate=2.0)
    assert sum(p.order_count for p in client.iter_order_pages(limit=1)) == 200
    assert server.throttled == 0  # the header's "/40" shrank the model before the bucket overflowed


def test_429_waits_retry_after_and_retries_the_same_url() -> None:
    time = ManualTime()
    server = PagedOrders(3)
    answers = iter([httpx.Response(429, headers={"Retry-After": "1.5"}, json={"errors": "Exceeded"})])
    server.before = lambda request: next(answers, None)
    client = make_client(server, time)
    assert [p.order_count for p in client.iter_order_pages(limit=2)] == [2, 1]
    assert server.requests[0].url == server.requests[1].url
    assert time.sleeps == [1.5]
    assert client.stats.throttled_429 == 1 and client.stats.retries == 1
    assert client.stats.rate_limit_wait_s == pytest.approx(1.5)


def test_429_without_retry_after_waits_for_the_bucket() -> None:
    time = ManualTime()
    server = PagedOrders(1)
    answers = iter([httpx.Response(429, json={"errors": "Exceeded"})])
    server.before = lambda request: next(answers, None)
    client = make_client(server, time, bucket_size=40, leak_rate=2.0)
    assert [p.order_count for p in client.iter_order_pages()] == [1]
    assert time.sleeps == [pytest.approx(1.0)]  # one request plus one of headroom at 2/s


def test_endless_429_gives_up_after_the_throttle_cap() -> None:
    from cancel_pipeline.shopify.errors import ShopifyRequestFailed

    time = ManualTime()
    server = PagedOrders(1)
    server.before = lambda request: httpx.Response(429, headers={"Retry-After": "2.0"})
    client = make_client(server, time, max_throttle_retries=3)
    with pytest.raises(ShopifyRequestFailed) as caught:
        list(client.iter_order_pages())
    assert caught.value.attempts == 4 and caught.value.status == 429
    assert len(server.requests) == 4


def test_5xx_retries_use_backoff_not_the_bucket() -> None:
    time = ManualTime()
    server = PagedOrders(2)
    answers = iter([httpx.Response(503), httpx.Response(502), httpx.Response(540)])
    server.before = lambda request: next(answers, None)
    client = make_client(server, time, backoff_base=0.5, backoff_cap=30.0)
    assert [p.order_count for p in client.iter_order_pages()] == [2]
    assert len(time.sleeps) == 3
    for attempt, slept in enumerate(time.sleeps, start=1):
        ceiling = 0.5 * 2 ** (attempt - 1)
        assert ceiling / 2 <= slept <= ceiling
    assert client.stats.retries == 3 and client.stats.requests == 4
    assert client.stats.rate_limit_wait_s == 0
