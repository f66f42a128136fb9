"""The Shopify client against the demo store served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.errors import ShopifyAuthError

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = {"updated_at_min": NOW - timedelta(hours=24), "updated_at_max": NOW}

pytestmark = pytest.mark.timeout(60)


@contextmanager
def served(**settings: Any) -> Iterator[tuple[DemoStore, str]]:
    store = DemoStore(clock=FrozenClock(NOW), **settings)
    with serve(store) as base_url:
        yield store, base_url


def client_for(base_url: str, **kwargs: Any) -> ShopifyClient:
    kwargs.setdefault("access_token", "demo-token")
    kwargs.setdefault("backoff_base", 0.01)  # keep recoveries quick; the schedule itself is unit-tested
    return ShopifyClient(base_url, **kwargs)


def ids_of(orders: list[Any]) -> list[Any]:
    return [order["id"] for order in orders]


def test_many_page_window_has_no_duplicate_and_no_missing_order() -> None:
    with served() as (store, base_url), client_for(base_url) as client:
        pages = list(client.iter_order_pages(status="any", limit=50, **WINDOW))
        seen = [order["id"] for page in pages for order in page.orders()]
        expected = ids_of(store.orders(status="any", **WINDOW))
        assert len(pages) > 20
        assert len(seen) == len(set(seen)), "an order came twice"
        assert set(seen) == set(expected) and len(seen) == client.count_orders(status="any", **WINDOW)

        # The window holds bursts of orders sharing one second; one of them must straddle page boundaries
        # for this test to prove the cursor's tie-break.
        page_of: dict[str, set[int]] = {}
        for page in pages:
            for order in page.orders():
                page_of.setdefault(order["created_at"], set()).add(page.page_number)
        shared_second, count = Counter(
            order["created_at"] for page in pages for order in page.orders()
        ).most_common(1)[0]
        assert count >= 100 and len(page_of[shared_second]) >= 2


def test_status_any_includes_what_the_default_open_hides() -> None:
    with served() as (_, base_url), client_for(base_url) as client:
        open_orders = [o for p in client.iter_order_pages(status="open", **WINDOW) for o in p.orders()]
        any_orders = [o for p in client.iter_order_pages(status="any", **WINDOW) for o in p.orders()]
        assert set(ids_of(open_orders)) < set(ids_of(any_orders))
        assert all(o["cancelled_at"] is None and o["closed_at"] is None for o in open_orders)
        hidden = [o for o in any_orders if o["id"] not in set(ids_of(open_orders))]
        assert any(o["cancelled_at"] for o in hidden) and any(o["closed_at"] for o in hidden)
        assert client.count_orders(status="open", **WINDOW) == len(open_orders)


def recording_sleep() -> tuple[list[float], Callable[[float], None]]:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    return slept, sleep


def test_429_retry_after_is_honoured_mid_walk() -> None:
    with served() as (store, base_url):
        store.fail_next({"status": 429, "retry_after": 0.3, "page_info_only": True})
        slept, sleep = recording_sleep()
        with client_for(base_url, sleep=sleep) as client:
            seen = [o["id"] for p in client.iter_order_pages(limit=100, **WINDOW) for o in p.orders()]
        assert seen == ids_of(store.orders(status="any", **WINDOW))
        assert 0.3 in slept
        assert client.stats.throttled_429 == 1 and store.stats()["throttled"] == 1
        assert client.stats.rate_limit_wait_s >= 0.3


def test_5xx_and_truncated_body_mid_walk_are_recovered() -> None:
    with served() as (store, base_url):
        store.fail_next(
            {"status": 503, "page_info_only": True},
            {"truncate": True, "page_info_only": True},
            {"status": 502, "page_info_only": True},
        )
        with client_for(base_url) as client:
            seen = [o["id"] for p in client.iter_order_pages(limit=100, **WINDOW) for o in p.orders()]
        assert seen == ids_of(store.orders(status="any", **WINDOW))
        assert client.stats.retries == 3
        by_status = store.stats()["by_status"]
        assert by_status.get("503") == 1 and by_status.get("502") == 1


def test_bad_token_gives_a_clear_error_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "shpat_wrong_0f1e2d3c4b5a69788796a5b4"
    with (
        served() as (_, base_url),
        client_for(base_url, access_token=wrong) as client,
        pytest.raises(ShopifyAuthError) as caught,
    ):
        next(client.iter_order_pages(**WINDOW))
    error = caught.value
    assert error.status == 401 and "401" in str(error)
    assert "SHOPIFY_ACCESS_TOKEN" in str(error) and "/orders.json" in str(error)
    assert base_url.removeprefix("http://") in str(error)
    for shown in (str(error), repr(error), repr(error.args), caplog.text):
        assert wrong not in shown


def test_long_run_under_a_40_request_bucket_makes_no_429() -> None:
    """160 requests through a 40-request bucket: the bucket fills and is crossed four times over.

    The leak rate is scaled from Shopify's 2/s to 40/s to keep the run short; the client is configured
    with the same bucket, so what is tested is the pacing logic, not the speed of the machine.
    """
    with served(bucket_size=40, leak_rate=40.0) as (store, base_url):
        with client_for(base_url, bucket_size=40, leak_rate=40.0) as client:
            pages = client.iter_order_pages(limit=5, **WINDOW)
            fetched = [next(pages) for _ in range(160)]
        assert len(fetched) == 160 and all(page.order_count == 5 for page in fetched)
        assert store.stats()["throttled"] == 0 and client.stats.throttled_429 == 0
        assert client.stats.requests == 160
        assert client.stats.rate_limit_wait_s > 0  # it did run into the bucket and waited instead of 429


@contextmanager
def counting_exchanges(store: DemoStore) -> Iterator[tuple[list[str], Callable]]:
    """Wrap the store to record every request path (to count token exchanges)."""
    paths: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable) -> Any:
        paths.append(environ["PATH_INFO"])
        return store(environ, start_response)

    yield paths, app


def test_client_credentials_exchange_and_renewal_before_expiry() -> None:
    clock = FrozenClock(NOW)
    store = DemoStore(clock=clock, token_expires_in=100)
    with counting_exchanges(store) as (paths, app), serve(app) as base_url:
        client = ShopifyClient(
            base_url, client_id="demo-client", client_secret="demo-secret", clock=lambda: clock().timestamp()
        )
        with client:
            assert client.count_orders(**WINDOW) == store.count_orders(status="any", **WINDOW)
            assert paths.count("/admin/oauth/access_token") == 1
            clock.advance(85)
            client.count_orders(**WINDOW)
            assert paths.count("/admin/oauth/access_token") == 1
            clock.advance(6)  # past 90 % of the lifetime: renewed before Shopify would refuse it
            client.count_orders(**WINDOW)
            assert paths.count("/admin/oauth/access_token") == 2
        assert "401" not in store.stats()["by_status"]


def test_expired_granted_token_is_exchanged_again_after_a_401() -> None:
    clock = FrozenClock(NOW)
    store = DemoStore(clock=clock, token_expires_in=100)
    with counting_exchanges(store) as (paths, app), serve(app) as base_url:
        # The client's own clock does not move, so only the store's 401 can tell it the token expired.
        with ShopifyClient(base_url, client_id="demo-client", client_secret="demo-secret") as client:
            client.count_orders(**WINDOW)
            clock.advance(101)
            client.count_orders(**WINDOW)
        assert paths.count("/admin/oauth/access_token") == 2
        assert store.stats()["by_status"]["401"] == 1


def test_wrong_client_secret_is_refused_clearly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "not-the-demo-secret-7c1f"
    with (
        served() as (_, base_url),
        ShopifyClient(base_url, client_id="demo-client", client_secret=secret) as client,
        pytest.raises(ShopifyAuthError) as caught,
    ):
        client.count_orders()
    assert "SHOPIFY_CLIENT_SECRET" in str(caught.value) and "401" in str(caught.value)
    for shown in (str(caught.value), repr(caught.value), repr(caught.value.args), caplog.text):
        assert secret not in shown
