"""A page that arrives complete but is not JSON (a damaged byte) is fetched again, never landed or lost.

The client proves a REST body's structure without parsing it (brackets, quotes, the order count), so a body
with a damaged number passes it; the warehouse's parse finds it. The raw assets then fetch that page again
by its request, and a body that stays damaged is retried like a truncated one until the client gives up,
naming the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import orjson
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.defs.ingestion.raw_assets import raw_updated_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.errors import ShopifyRequestFailed
from cancel_pipeline.shopify.resource import ShopifyResource

DAY = "2026-03-02"
START = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 3, 3, tzinfo=UTC)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def store() -> DemoStore:
    return DemoStore(clock=FrozenClock("2026-03-03T03:00:00Z"), bucket_size=400, leak_rate=20.0)


def client_for(store: DemoStore, max_retries: int = 5) -> ShopifyClient:
    return ShopifyClient(
        "http://demo-store.local",
        access_token="demo-token",
        bucket_size=400,
        leak_rate=20.0,
        max_retries=max_retries,
        transport=httpx.WSGITransport(app=store),
        sleep=lambda _seconds: None,
    )


def test_a_damaged_body_passes_the_byte_count_and_fetching_it_again_gives_the_good_page(
    store: DemoStore,
) -> None:
    with client_for(store) as client:
        clean = next(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
        store.faults.fail_next({"corrupt": True})
        damaged = next(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
        assert damaged.request_path == clean.request_path and damaged.order_count == clean.order_count
        assert len(damaged.body) == len(clean.body) and damaged.body != clean.body
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(damaged.body)
        store.faults.fail_next({"corrupt": True})  # the first fetch again is damaged too: retried
        again = client.refetch_page(damaged.request_path, damaged.page_number)
    assert again.body == clean.body and again.page_number == clean.page_number
    assert again.order_count == clean.order_count
    assert client.stats.retries == 1


def test_a_body_that_stays_damaged_fails_naming_the_request(store: DemoStore) -> None:
    with client_for(store, max_retries=2) as client:
        page = next(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
        store.faults.fail_next(*[{"corrupt": True}] * 3)
        with pytest.raises(ShopifyRequestFailed) as failure:
            client.refetch_page(page.request_path, page.page_number)
    message = str(failure.value)
    assert "orders.json" in message and "updated_at_min" in message
    assert "demo-token" not in message


@pytest.fixture
def resources(store: DemoStore, tmp_path: Path) -> Iterator[dict[str, object]]:
    with serve(store) as base_url:
        yield {
            "shopify": ShopifyResource(
                store=base_url, access_token="demo-token", bucket_size=400, leak_rate=20.0, api="rest"
            ),
            "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        }


def landed(resources: dict[str, object]) -> tuple[list[tuple], int]:
    warehouse = resources["duckdb"]
    assert isinstance(warehouse, WarehouseResource)
    with warehouse.get_connection() as con:
        pages = con.execute(
            "select page_number, order_count, body::varchar from raw_order_page_bodies"
            " where superseded_at is null order by page_number"
        ).fetchall()
        [(objects,)] = con.execute(
            "select count(*) from raw_order_objects o join raw_order_pages p using (page_seq)"
            " where p.superseded_at is null"
        ).fetchall()
    return pages, objects


def test_the_raw_asset_fetches_a_damaged_page_again_and_lands_what_a_clean_run_lands(
    store: DemoStore, resources: dict[str, object]
) -> None:
    with dg.instance_for_test() as instance:
        clean = dg.materialize(
            [raw_updated_order_pages], resources=resources, partition_key=DAY, instance=instance
        )
        assert clean.success
        clean_pages, clean_objects = landed(resources)
        # The run asks orders/count.json first (to slice the day), then the first page of orders.json.
        first_page_request = store.stats()["admin_requests"] + 2
        store.faults.fail_next({"corrupt": True, "request_number": first_page_request})
        result = dg.materialize(
            [raw_updated_order_pages], resources=resources, partition_key=DAY, instance=instance
        )
        assert result.success
        logs = [event.message for event in instance.all_logs(result.run_id) if event.message]
    pages, objects = landed(resources)
    assert pages == clean_pages and objects == clean_objects > 0
    for _number, _count, body in pages:
        orjson.loads(body)
    assert any("Fetched 1 pages again" in message for message in logs), logs
