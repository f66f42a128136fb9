"""The retry policy on its own (no client, no clock), and the client keeping to it."""

from __future__ import annotations

import random

import httpx
import pytest

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.errors import ShopifyRequestFailed
from cancel_pipeline.shopify.rate_limit import LeakyBucket
from cancel_pipeline.shopify.retry import (
    RETRYABLE_STATUSES,
    Failed,
    RetryPolicy,
    Throttled,
    failure_for_status,
)
from cancel_pipeline_tests.test_client_support import TOKEN, ManualTime, PagedOrders


def policy(**kwargs) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(5), **kwargs)


# -- which setbacks retry --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 530, 540])
def test_transient_server_statuses_are_failures_to_retry(status: int) -> None:
    assert failure_for_status(status) == Failed(f"HTTP {status}", status)
    assert status in RETRYABLE_STATUSES


@pytest.mark.parametrize("status", [200, 400, 401, 402, 403, 404, 422, 423, 429, 501])
def test_other_statuses_are_not_failures_to_retry(status: int) -> None:
    # 429 is retried too, but as a throttle with the wait the client worked out, not with backoff.
    assert failure_for_status(status) is None


def test_client_status_list_is_the_policy_one() -> None:
    from cancel_pipeline.shopify import client

    assert client.RETRYABLE_STATUSES is RETRYABLE_STATUSES


# -- how long to wait --------------------------------------------------------------------------------------


def test_a_throttle_waits_exactly_what_the_server_asked_even_beyond_the_backoff_cap() -> None:
    retries = policy(backoff_cap=2.0).start()
    assert retries.after(Throttled(1.5, status=429)) == 1.5
    assert retries.after(Throttled(0.0, status=429)) == 0.0
    assert retries.after(Throttled(45.0, status=429)) == 45.0


def test_failure_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rules = policy(max_retries=100, backoff_base=0.5, backoff_cap=8.0)
    for count, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (100, 8.0)]:
        delays = [rules.delay(Failed("HTTP 503", 503), count) for _ in range(200)]
        assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, not a fixed schedule


def test_the_same_seed_gives_the_same_schedule() -> None:
    def schedule() -> list[float | None]:
        retries = RetryPolicy(max_retries=5, rng=random.Random(11)).start()
        return [retries.after(Failed("ReadTimeout")) for _ in range(5)]

    assert schedule() == schedule()


# -- when to give up -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 1, 5])
def test_failures_give_up_after_max_retries(max_retries: int) -> None:
    retries = policy(max_retries=max_retries).start()
    for _ in range(max_retries):
        assert retries.after(Failed("HTTP 502", 502)) is not None
    assert retries.after(Failed("HTTP 502", 502)) is None
    assert retries.failures == max_retries + 1


def test_throttles_give_up_after_max_throttle_retries() -> None:
    retries = policy(max_throttle_retries=3).start()
    assert [retries.after(Throttled(2.0)) for _ in range(4)] == [2.0, 2.0, 2.0, None]


def test_throttles_and_failures_have_separate_budgets() -> None:
    retries = policy(max_retries=1, max_throttle_retries=2).start()
    assert retries.after(Throttled(1.0)) == 1.0
    assert retries.after(Failed("HTTP 503", 503)) is not None
    assert retries.after(Throttled(1.0)) == 1.0  # the failure did not use up a throttle retry
    assert retries.after(Throttled(1.0)) is None
    assert retries.after(Failed("HTTP 503", 503)) is None


def test_each_request_starts_with_a_full_budget() -> None:
    rules = policy(max_retries=1)
    first = rules.start()
    assert first.after(Failed("HTTP 500", 500)) is not None
    assert first.after(Failed("HTTP 500", 500)) is None
    assert rules.start().after(Failed("HTTP 500", 500)) is not None


# -- the client keeps to the policy ---------------------------------------------------------------------------


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


def test_client_throttles_do_not_use_up_failure_retries() -> None:
    time = ManualTime()
    server = PagedOrders(2)
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0.5"}),
            httpx.Response(503),
            httpx.Response(429, headers={"Retry-After": "0.5"}),
            httpx.Response(503),
        ]
    )
    server.before = lambda request: next(answers, None)
    client = make_client(server, time, max_retries=2, max_throttle_retries=2)
    assert [p.order_count for p in client.iter_order_pages()] == [2]
    assert client.stats.requests == 5 and client.stats.retries == 4 and client.stats.throttled_429 == 2
    # Both Retry-After waits count as rate-limit wait (so does pacing on the bucket the 429s filled); the
    # two backoff sleeps do not.
    assert time.sleeps.count(0.5) == 2 and client.stats.rate_limit_wait_s >= 1.0
    assert client.stats.rate_limit_wait_s < sum(time.sleeps)


def test_client_gives_up_on_a_truncated_body_naming_the_last_problem() -> None:
    time = ManualTime()
    server = PagedOrders(2)
    server.before = lambda request: httpx.Response(200, content=b'{"orders": [')
    client = make_client(server, time, max_retries=1)
    with pytest.raises(ShopifyRequestFailed) as caught:
        list(client.iter_order_pages())
    assert caught.value.attempts == 2 and caught.value.status == 200
    assert "not complete JSON" in str(caught.value) and TOKEN not in str(caught.value)


# -- the bucket's headroom for concurrent streams ---------------------------------------------------------------


def test_bucket_keeps_extra_headroom_only_inside_the_block() -> None:
    bucket = LeakyBucket(40, 2.0, headroom=1, clock=ManualTime().clock)
    with bucket.keep_headroom(4):
        assert bucket.headroom == 4
        with bucket.keep_headroom(2):  # never lowers what an outer block keeps
            assert bucket.headroom == 4
        assert bucket.headroom == 4
    assert bucket.headroom == 1
    with pytest.raises(RuntimeError), bucket.keep_headroom(100):
        assert bucket.headroom == 39  # at most size - 1: one request must always fit
        raise RuntimeError("restored anyway")
    assert bucket.headroom == 1
