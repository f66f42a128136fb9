"""`SHOPIFY_API`: which client the resource builds, and every path (sensor count, CLI fetch) over GraphQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cancel_pipeline.cli import fetch_window
from cancel_pipeline.defs.ingestion.sensors import evaluate_cancellation_tick
from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.shopify.retry import RetryPolicy
from cancel_pipeline_tests.graphql_responder import TOKEN, GraphQLShop
from cancel_pipeline_tests.order_builders import line_item, order, refund, utc

T0 = utc(2026, 3, 3, 10)


@pytest.fixture
def store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_STORE", "my-shop")
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_setting_secret")
    monkeypatch.delenv("SHOPIFY_API")


def test_a_configured_store_reads_through_graphql_by_default(store_env: None) -> None:
    resource = ShopifyResource.from_env()
    assert resource.chosen_api == "graphql" and resource.page_streams == 1
    with resource.get_client() as client:
        assert isinstance(client, ShopifyGraphQLClient) and client.api == "graphql"


def test_shopify_api_rest_keeps_the_rest_client(store_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_API", " REST ")
    with ShopifyResource.from_env().get_client() as client:
        assert isinstance(client, ShopifyClient) and client.api == "rest"


def test_the_built_in_demo_store_reads_through_graphql_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHOPIFY_STORE", "SHOPIFY_API"):
        monkeypatch.delenv(name, raising=False)
    resource = ShopifyResource.from_env()
    assert resource.uses_embedded_store and resource.chosen_api == "graphql"
    with resource.get_client() as client:
        assert isinstance(client, ShopifyGraphQLClient)
        # In process, Plus-sized: a day pages quickly.
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # the store runs on real time
        window = {"updated_at_min": end - timedelta(hours=12), "updated_at_max": end}
        pages = list(client.iter_order_pages(**window))
        assert all(p.api == "graphql" for p in pages)
        assert client.count_orders(**window) == sum(p.order_count for p in pages) > 100


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SHOPIFY_API", "soap"),
        ("SHOPIFY_GRAPHQL_RESTORE_RATE", "fast"),
        ("SHOPIFY_GRAPHQL_BUCKET_POINTS", "-5"),
    ],
)
def test_bad_settings_fail_naming_the_variable(
    store_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        ShopifyResource.from_env()


def test_plan_rates_reach_the_client(store_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_GRAPHQL_RESTORE_RATE", "1000")
    monkeypatch.setenv("SHOPIFY_GRAPHQL_BUCKET_POINTS", "10000")
    resource = ShopifyResource.from_env()
    assert (resource.graphql_restore_rate, resource.graphql_bucket_points) == (1000.0, 10000.0)
    with resource.get_client() as client:
        assert isinstance(client, ShopifyGraphQLClient)
        assert (client._bucket.restore_rate, client._bucket.size) == (1000.0, 10000.0)


def _shop() -> GraphQLShop:
    lines = [line_item(500 + n, 2) for n in range(12)]
    return GraphQLShop(
        [
            order(1, T0, cancelled_at=T0, cancel_reason="inventory"),
            order(2, T0, line_items=lines, refunds=[refund(9, T0, [(511, 1, "cancel")])]),
            order(3, T0),
        ]
    )


def _client(shop: GraphQLShop) -> ShopifyGraphQLClient:
    return ShopifyGraphQLClient(
        "my-shop",
        access_token=TOKEN,
        transport=shop.transport(),
        sleep=shop.clock.sleep,
        clock=shop.clock,
        retry_policy=RetryPolicy(max_retries=1),
    )


def test_cli_fetch_summarises_graphql_pages() -> None:
    shop = _shop()
    with _client(shop) as client:
        seen = fetch_window(client, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert (seen.orders, seen.canceled, seen.partially_canceled) == (3, 1, 1)
    assert dict(seen.canceled_by_reason) == {"inventory": 1}


def test_the_cancellation_sensor_counts_with_orders_count() -> None:
    shop = _shop()
    with _client(shop) as client:
        result = evaluate_cancellation_tick(client, cursor=None, now=utc(2026, 3, 3, 10, 10))
    assert shop.operations == ["OrdersCount"]
    assert [request.tags["cancel_pipeline/detected_cancellations"] for request in result.run_requests] == [
        "1"
    ]


@pytest.mark.parametrize(("raw", "hours"), [(None, 72.0), ("24", 24.0), ("0", None), ("1.5", 1.5)])
def test_the_bulk_threshold_setting(
    store_env: None, monkeypatch: pytest.MonkeyPatch, raw: str | None, hours: float | None
) -> None:
    if raw is not None:
        monkeypatch.setenv("SHOPIFY_BULK_THRESHOLD_HOURS", raw)
    resource = ShopifyResource.from_env()
    expected = None if hours is None else timedelta(hours=hours)
    assert resource.bulk_threshold == expected
    with resource.get_client() as client:
        assert isinstance(client, ShopifyGraphQLClient) and client.bulk_threshold == expected


def test_a_bad_bulk_threshold_fails_naming_the_variable(
    store_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPIFY_BULK_THRESHOLD_HOURS", "a week")
    with pytest.raises(ValueError, match="SHOPIFY_BULK_THRESHOLD_HOURS"):
        ShopifyResource.from_env()


def test_cli_fetch_summarises_a_bulk_read_too() -> None:
    shop = _shop()
    client = ShopifyGraphQLClient(
        "my-shop",
        access_token=TOKEN,
        transport=shop.transport(),
        sleep=shop.clock.sleep,
        clock=shop.clock,
        bulk_threshold=timedelta(hours=1),
    )
    with client:
        seen = fetch_window(client, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert "BulkOrders" in shop.operations
    assert (seen.orders, seen.canceled, seen.partially_canceled) == (3, 1, 1)
