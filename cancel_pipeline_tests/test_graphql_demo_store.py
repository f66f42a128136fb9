"""The product over GraphQL against the demo store's GraphQL Admin API, over real HTTP on 127.0.0.1: the same
history through REST, paged GraphQL and a bulk operation gives identical tables; pacing, bulk faults, and the
raw asset, sensor and refresh paths."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.raw_assets import raw_updated_order_pages
from cancel_pipeline.defs.ingestion.sensors import evaluate_cancellation_tick
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.bulk import BulkOperationFailed, BulkSettings
from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.raw_pages import land_pages
from cancel_pipeline.warehouse.schema import ensure_schema
from cancel_pipeline_tests.demo_fixtures import DEMO_NOW, DEMO_TOKEN
from cancel_pipeline_tests.order_builders import table_rows

pytestmark = pytest.mark.timeout(180)
NOW = datetime.fromisoformat(DEMO_NOW)
NOW_2026 = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # two cancellations in the half hour before
START, END = NOW - timedelta(days=2), NOW
# Where the row came from, and when it was fetched, differ by design between the reads.
_SOURCE_COLUMNS = {
    "page_seq",
    "page_number",
    "position",
    "request_path",
    "raw_order",
    "detail",
    "first_fetched_at",
    "last_fetched_at",
}
_TABLES = ("raw_order_objects", "order_versions", "canceled_orders", "canceled_line_items", "orders")
FAST_BULK = {"bulk_start_delay": 0.0, "bulk_seconds_per_1000": 0.01, "bulk_cancel_delay": 0.0}


def _serve_store(**bulk_timing: float) -> Iterator[tuple[DemoStore, str]]:
    store = DemoStore(
        clock=FrozenClock(DEMO_NOW),
        bucket_size=400,
        leak_rate=20.0,
        graphql_bucket_size=20000,
        graphql_restore_rate=1000,
        **bulk_timing,
    )
    with serve(store) as url:
        yield store, url
    store.graphql.bulk.close()


@pytest.fixture
def served() -> Iterator[tuple[DemoStore, str]]:
    yield from _serve_store(**FAST_BULK)


def _graphql(url: str, **kwargs: Any) -> ShopifyGraphQLClient:
    return ShopifyGraphQLClient(
        url,
        access_token=DEMO_TOKEN,
        bucket_points=kwargs.pop("bucket_points", 20000),
        restore_rate=kwargs.pop("restore_rate", 1000),
        bulk_settings=kwargs.pop("bulk_settings", BulkSettings(poll_initial_s=0.1, chunk_bytes=256 * 1024)),
        **kwargs,
    )


def _tables(path: Path, pages: list) -> dict[str, list[dict]]:
    con = duckdb.connect(str(path))
    ensure_schema(con)
    land_pages(
        con,
        asset="raw_updated_order_pages",
        partition_key="history",
        window_start=None,
        window_end=None,
        requested_min=None,
        requested_max=None,
        pages=pages,
        store="demo",
    )
    derive_new_pages(con)
    tables = {
        table: sorted(
            (
                {k: v for k, v in row.items() if k not in _SOURCE_COLUMNS}
                for row in table_rows(con, f"select * from {table}")
            ),
            key=repr,
        )
        for table in _TABLES
    }
    con.close()
    return tables


def test_rest_paged_graphql_and_bulk_read_the_same_history(served, tmp_path: Path) -> None:
    store, url = served
    reads = {}
    with ShopifyClient(url, access_token=DEMO_TOKEN, bucket_size=400, leak_rate=20.0) as rest:
        reads["rest"] = list(rest.iter_order_pages(updated_at_min=START, updated_at_max=END))
    with _graphql(url) as paged:
        reads["graphql"] = list(paged.iter_order_pages(updated_at_min=START, updated_at_max=END))
    for concurrency in (1, 5):  # one operation over the range, and five over slices of it
        with _graphql(url, bulk_threshold=timedelta(hours=24), bulk_concurrency=concurrency) as bulk:
            reads[f"bulk-{concurrency}"] = list(
                bulk.iter_order_pages(updated_at_min=START, updated_at_max=END)
            )
    assert {p.operation for p in reads["graphql"]} == {"orders"}
    assert {p.operation for p in reads["bulk-1"]} == {p.operation for p in reads["bulk-5"]} == {"bulk"}
    assert len({p.request_path for p in reads["bulk-5"]}) == 5 == len(store.graphql.bulk.all()) - 1
    tables = {name: _tables(tmp_path / f"{name}.duckdb", pages) for name, pages in reads.items()}
    # REST serves a few deliberately malformed orders, which it rejects (some without a usable id); GraphQL's
    # typed answers cannot carry them (the demo store serves those orders well formed there). So: paged and
    # bulk GraphQL agree exactly, and agree with REST on every order REST could type.
    assert tables["bulk-1"] == tables["bulk-5"] == tables["graphql"]
    rest_objects = tables["rest"]["raw_order_objects"]
    typed = {r["order_id"] for r in rest_objects if r["reason"] is None}
    rejected = len(rest_objects) - len(typed)
    assert 0 < rejected < 50 and len(typed) > 1000
    assert all(r["reason"] is None for r in tables["graphql"]["raw_order_objects"])
    graphql_ids = {r["order_id"] for r in tables["graphql"]["raw_order_objects"]}
    assert typed <= graphql_ids and len(graphql_ids - typed) <= rejected

    def only_typed(read: dict[str, list[dict]]) -> dict[str, list[dict]]:
        return {t: [r for r in rows if r.get("order_id") in typed] for t, rows in read.items()}

    assert only_typed(tables["graphql"]) == only_typed(tables["rest"])


def test_paging_on_a_tight_bucket_is_paced_not_throttled() -> None:
    # A bucket barely larger than one page's requested cost: every page waits for the refill.
    store = DemoStore(clock=FrozenClock(DEMO_NOW), graphql_bucket_size=1200, graphql_restore_rate=400)
    with serve(store) as url, _graphql(url, bucket_points=1200, restore_rate=400) as client:
        pages = list(client.iter_order_pages(updated_at_min=NOW - timedelta(hours=8), updated_at_max=NOW))
    assert sum(p.order_count for p in pages) > 50 and len(pages) > 5
    assert client.stats.throttled_429 == 0
    assert client.stats.rate_limit_wait_s > 0


def test_a_failed_bulk_operation_lands_nothing(served) -> None:
    store, url = served
    store.set_faults(bulk_fail_next=[{"error_code": "INTERNAL_SERVER_ERROR", "after_objects": 40}])
    with (
        _graphql(url, bulk_threshold=timedelta(hours=1)) as client,
        pytest.raises(BulkOperationFailed) as raised,
    ):
        list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    assert "ended FAILED with INTERNAL_SERVER_ERROR" in str(raised.value)
    assert "partial data" in str(raised.value)


def test_a_cut_bulk_download_is_resumed(served, tmp_path: Path) -> None:
    store, url = served
    store.set_faults(download_fail_next=[{"cut_after": 5000}, {"status": 503}])
    with _graphql(url, bulk_threshold=timedelta(hours=1)) as client:
        pages = list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    with _graphql(url) as client:
        paged = list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    assert sum(p.order_count for p in pages) == sum(p.order_count for p in paged)


@pytest.fixture
def served_slow() -> Iterator[tuple[DemoStore, str]]:
    """Bulk operations that stay CREATED for 2 s, so the slices of a read are all running when the last starts,
    at most two running at once (LIMIT_REACHED beyond), and cancelled at once."""
    yield from _serve_store(bulk_start_delay=2.0, bulk_seconds_per_1000=0.01, bulk_cancel_delay=0.0)


def _statuses(store: DemoStore) -> list[str]:
    return [store.graphql.bulk.status(op, store.clock()) for op in store.graphql.bulk.all()]


def _bulk_resources(url: str, tmp_path: Path, **shopify: Any) -> dict[str, Any]:
    """The raw asset's resources: GraphQL with a 24 h bulk threshold, a warehouse in `tmp_path`."""
    return {
        "shopify": ShopifyResource(
            store=url, access_token=DEMO_TOKEN, api="graphql", bulk_threshold_hours=24, **shopify
        ),
        "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
    }


def _materialize_march_first(
    resources: dict[str, Any], raise_on_error: bool = True
) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """One run of `raw_updated_order_pages` over 2026-03-01..02: its result and its log messages."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_updated_order_pages],
            resources=resources,
            tags={RANGE_START_TAG: "2026-03-01", RANGE_END_TAG: "2026-03-02"},
            instance=instance,
            raise_on_error=raise_on_error,
        )
        return result, [record.user_message for record in instance.all_logs(result.run_id)]


def test_the_slices_of_a_range_run_at_once(served_slow, caplog) -> None:
    store, url = served_slow
    caplog.set_level("INFO", logger="cancel_pipeline.shopify")
    with _graphql(url, bulk_threshold=timedelta(hours=1), bulk_concurrency=5) as client:
        pages = list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    with _graphql(url) as client:
        paged = list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    assert {p.operation for p in pages} == {"bulk"}
    assert sum(p.order_count for p in pages) == sum(p.order_count for p in paged)
    assert _statuses(store) == ["COMPLETED"] * 5
    assert store.graphql.bulk.peak_running == 5  # the store saw five of ours running together
    assert "at most 5 bulk operations ran at once" in caplog.records[-1].getMessage()


def test_slices_over_the_stores_limit_wait_for_one_of_ours_instead_of_paging(caplog) -> None:
    store = DemoStore(
        clock=FrozenClock(DEMO_NOW),
        graphql_bucket_size=20000,
        graphql_restore_rate=1000,
        bulk_start_delay=1.0,
        bulk_seconds_per_1000=0.01,
        bulk_max_running=2,  # LIMIT_REACHED for a third
    )
    caplog.set_level("INFO", logger="cancel_pipeline.shopify")
    with serve(store) as url:
        with _graphql(url, bulk_threshold=timedelta(hours=1), bulk_concurrency=5) as client:
            pages = list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
        with _graphql(url) as client:
            paged = list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    store.graphql.bulk.close()
    assert {p.operation for p in pages} == {"bulk"}
    assert sum(p.order_count for p in pages) == sum(p.order_count for p in paged)
    assert _statuses(store) == ["COMPLETED"] * 5 and store.graphql.bulk.peak_running == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("queued" in m and "A maximum of 2 bulk query operations" in m for m in messages)
    assert not any("paging" in m for m in messages)


def test_a_failed_slice_fails_the_run_lands_nothing_and_cancels_the_other_slices(tmp_path: Path) -> None:
    # The first slice fails after a few objects; the others would run for seconds.
    store = DemoStore(
        clock=FrozenClock(NOW_2026.isoformat()),
        graphql_bucket_size=20000,
        graphql_restore_rate=1000,
        bulk_start_delay=0.2,
        bulk_seconds_per_1000=60.0,
        bulk_cancel_delay=0.0,
    )
    store.set_faults(bulk_fail_next=[{"error_code": "INTERNAL_SERVER_ERROR", "after_objects": 5}])
    with serve(store) as url:
        resources = _bulk_resources(url, tmp_path, bulk_concurrency=5)
        result, messages = _materialize_march_first(resources, raise_on_error=False)
        statuses = _statuses(store)
    store.graphql.bulk.close()
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "ended FAILED with INTERNAL_SERVER_ERROR" in failure.step_failure_data.error.cause.message
    assert any("(slice 1 of 5) FAILED" in m for m in messages)
    assert statuses == ["FAILED"] + ["CANCELED"] * 4
    with resources["duckdb"].get_connection() as con:
        assert con.execute("select count(*) from raw_order_pages").fetchall() == [(0,)]


def test_a_terminated_read_cancels_every_running_slice() -> None:
    store = DemoStore(clock=FrozenClock(DEMO_NOW), bulk_start_delay=600.0, bulk_cancel_delay=0.0)

    class Terminated(BaseException):
        """What Dagster raises in a step when its run is terminated."""

    pauses = 0

    def sleep(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 3:
            raise Terminated()

    with (
        serve(store) as url,
        _graphql(url, bulk_threshold=timedelta(hours=1), bulk_concurrency=5, sleep=sleep) as client,
        pytest.raises(Terminated),
    ):
        list(client.iter_order_pages(updated_at_min=START, updated_at_max=END))
    assert _statuses(store) == ["CANCELED"] * 5
    store.graphql.bulk.close()


@pytest.fixture
def served_2026() -> Iterator[tuple[DemoStore, str]]:
    """The store at a moment inside the pipeline's partitions (they start 2026-01-01)."""
    store = DemoStore(
        clock=FrozenClock(NOW_2026.isoformat()),
        graphql_bucket_size=20000,
        graphql_restore_rate=1000,
        **FAST_BULK,
    )
    with serve(store) as url:
        yield store, url
    store.graphql.bulk.close()


def test_the_raw_asset_reads_a_range_by_bulk_and_says_so(served_2026, tmp_path: Path) -> None:
    _, url = served_2026
    resources = _bulk_resources(url, tmp_path)
    result, messages = _materialize_march_first(resources)
    assert result.success
    # The bulk operation's progress is in the run's logs.
    assert any("bulk operation" in m and "started" in m for m in messages)
    assert any("COMPLETED" in m and "objects" in m for m in messages)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["api"].value == "graphql" and metadata["read_by"].value == "bulk"
    assert metadata["orders"].value > 500
    with resources["duckdb"].get_connection() as con:
        assert con.execute("select distinct api, operation from raw_order_pages").fetchall() == [
            ("graphql", "bulk")
        ]
        [(rejects,)] = con.execute(
            "select count(*) from raw_order_objects where reason is not null"
        ).fetchall()
    assert rejects == 0


def test_the_sensor_and_a_refresh_work_over_graphql(served_2026) -> None:
    store, url = served_2026
    since = NOW_2026 - timedelta(minutes=30)  # the previous window: as far back as a tick looks
    expected = store.count_orders(status="cancelled", updated_at_min=since)
    with _graphql(url) as client:
        assert client.count_orders(status="cancelled", updated_at_min=since) == expected
        result = evaluate_cancellation_tick(client, cursor=since.isoformat(), now=NOW_2026)
        listed = store.orders(
            status="any", updated_at_min=NOW_2026 - timedelta(hours=6), updated_at_max=NOW_2026
        )
        some = [o["id"] for o in listed if isinstance(o["id"], int)][:300]  # REST's malformed ids left out
        pages = list(client.get_orders([*some, 1]))
    assert expected == 2
    assert {r.tags["cancel_pipeline/detected_cancellations"] for r in result.run_requests} == {"2"}
    assert {p.operation for p in pages} == {"nodes"}
    assert sum(p.order_count for p in pages) == len(some) > 50
