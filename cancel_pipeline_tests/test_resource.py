"""ShopifyResource: configuration from the environment, the demo-store default, and use inside Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.embedded import embedded_shop
from cancel_pipeline.shopify.errors import ShopifyConfigError
from cancel_pipeline.shopify.resource import DEMO_BASE_URL, ShopifyResource, ShopifySettingsError

VARIABLES = (
    "SHOPIFY_STORE",
    "SHOPIFY_ACCESS_TOKEN",
    "SHOPIFY_CLIENT_ID",
    "SHOPIFY_CLIENT_SECRET",
    "SHOPIFY_API_VERSION",
    "SHOPIFY_BUCKET_SIZE",
    "SHOPIFY_LEAK_RATE",
    "SHOPIFY_BULK_CONCURRENCY",
)
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_from_env_passes_secrets_as_env_vars_not_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_STORE", "my-shop")
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_resource_secret")
    monkeypatch.setenv("SHOPIFY_API_VERSION", "2026-01")
    monkeypatch.setenv("SHOPIFY_BUCKET_SIZE", "400")
    monkeypatch.setenv("SHOPIFY_LEAK_RATE", "20")
    resource = ShopifyResource.from_env()
    assert isinstance(resource.access_token, dg.EnvVar)
    assert resource.access_token.env_var_name == "SHOPIFY_ACCESS_TOKEN"
    assert resource.client_secret is None  # unset variables are not passed at all
    assert (resource.bucket_size, resource.leak_rate) == (400, 20.0)
    with resource.get_client() as client:
        assert client.store == "my-shop.myshopify.com" and client.api_version == "2026-01"


def test_without_a_store_the_demo_store_answers_in_process() -> None:
    resource = ShopifyResource.from_env()
    assert resource.uses_embedded_store
    with resource.get_client() as client:
        assert client.store == DEMO_BASE_URL.removeprefix("http://")
        demo, _ = embedded_shop(400, 20.0)  # Plus-sized by default, so local runs are quick
        end = demo.clock().replace(microsecond=0)
        window = {"updated_at_min": end - timedelta(hours=24), "updated_at_max": end}
        assert client.count_orders(**window) == demo.count_orders(status="any", **window) > 0
        page = next(client.iter_order_pages(**window))
        assert page.order_count > 0 and page.request_path.startswith("/admin/api/")


def test_both_credential_kinds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_STORE", "my-shop")
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_x")
    monkeypatch.setenv("SHOPIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SHOPIFY_CLIENT_SECRET", "secret-value-9")
    with pytest.raises(ShopifyConfigError, match="not both") as caught:
        ShopifyResource.from_env().get_client()
    assert "secret-value-9" not in str(caught.value) and "shpat_x" not in str(caught.value)


@pytest.mark.parametrize("grant", [False, True])
def test_a_dagster_asset_reads_a_served_store_through_the_resource(
    monkeypatch: pytest.MonkeyPatch, grant: bool
) -> None:
    store = DemoStore(clock=FrozenClock(NOW))
    with serve(store) as base_url:
        monkeypatch.setenv("SHOPIFY_STORE", base_url)
        if grant:
            monkeypatch.setenv("SHOPIFY_CLIENT_ID", "demo-client")
            monkeypatch.setenv("SHOPIFY_CLIENT_SECRET", "demo-secret")
        else:
            monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "demo-token")

        @dg.asset
        def canceled_count(shopify: ShopifyResource) -> int:
            with shopify.get_client() as client:
                return client.count_orders(status="cancelled", updated_at_min=NOW - timedelta(days=2))

        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [canceled_count], resources={"shopify": ShopifyResource.from_env()}, instance=instance
            )
            assert result.success
            counted = result.output_for_node("canceled_count")
        expected = store.count_orders(status="cancelled", updated_at_min=NOW - timedelta(days=2))
        assert counted == expected > 0


@pytest.mark.parametrize(
    ("settings", "streams"),
    [
        ({"store": "my-shop"}, 1),  # Standard: 2 requests/s, one cursor keeps the bucket busy
        ({"store": "my-shop", "leak_rate": 20.0, "bucket_size": 400}, 8),  # Plus at 400 ms a page
        ({}, 8),  # the demo store has a Plus bucket
        ({"store": "my-shop", "leak_rate": 100.0}, 16),  # capped
        ({"store": "my-shop", "leak_rate": 20.0, "fetch_streams": 3}, 3),  # an explicit setting wins
    ],
)
def test_page_streams_follow_the_plans_leak_rate_unless_set(settings: dict, streams: int) -> None:
    assert ShopifyResource(**settings, api="rest").page_streams == streams
    # GraphQL walks one cursor whatever the plan.
    assert ShopifyResource(**settings, api="graphql").page_streams == 1


@pytest.mark.parametrize(
    ("version", "operations"),
    [("2026-01", 5), ("2026-07", 5), ("unstable", 5), ("2025-10", 1), ("2025-01", 1)],
)
def test_bulk_concurrency_defaults_to_what_the_api_version_allows(version: str, operations: int) -> None:
    resource = ShopifyResource(api="graphql", api_version=version)
    assert resource.bulk_operations == operations
    with resource.get_client() as client:
        assert client.bulk_concurrency == operations


def test_bulk_concurrency_is_read_from_the_environment_and_checked_against_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPIFY_API", "graphql")
    monkeypatch.setenv("SHOPIFY_BULK_CONCURRENCY", " 3 ")
    monkeypatch.setenv("SHOPIFY_API_VERSION", "2026-04")
    resource = ShopifyResource.from_env()
    assert resource.bulk_operations == 3
    with resource.get_client() as client:
        assert client.bulk_concurrency == 3
    monkeypatch.setenv("SHOPIFY_BULK_CONCURRENCY", "1")
    monkeypatch.setenv("SHOPIFY_API_VERSION", "2025-10")
    assert ShopifyResource.from_env().bulk_operations == 1
    # Before 2026-01 Shopify runs one bulk query at a time per app: more is refused at load, naming both.
    monkeypatch.setenv("SHOPIFY_BULK_CONCURRENCY", "2")
    with pytest.raises(ShopifySettingsError) as raised:
        ShopifyResource.from_env()
    assert "SHOPIFY_BULK_CONCURRENCY=2" in str(raised.value)
    assert "SHOPIFY_API_VERSION=2025-10" in str(raised.value)
    # ... and so it is when the resource is configured directly.
    with pytest.raises(ShopifySettingsError, match="SHOPIFY_API_VERSION=2025-10"):
        ShopifyResource(api="graphql", api_version="2025-10", bulk_concurrency=2).get_client()


def test_fetch_streams_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_FETCH_STREAMS", "5")
    assert ShopifyResource.from_env().page_streams == 5
    monkeypatch.setenv("SHOPIFY_FETCH_STREAMS", "lots")
    with pytest.raises(ValueError, match="SHOPIFY_FETCH_STREAMS"):
        ShopifyResource.from_env()
