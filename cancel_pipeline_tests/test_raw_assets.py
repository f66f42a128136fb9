"""Landing raw pages, and the raw assets against the demo store over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse import raw_pages
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.page_parsing import append_parsed
from cancel_pipeline.warehouse.raw_pages import PageSpool, land_pages

ASSET = "raw_canceled_order_pages"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_page(number: int, order_ids: list[int], body: bytes | None = None) -> OrderPage:
    return OrderPage(
        page_number=number,
        request_path="/admin/api/2026-07/orders.json?status=cancelled&limit=250",
        api_version="2026-07",
        fetched_at=utc("2026-03-02T03:00:00"),
        body=body if body is not None else orjson.dumps({"orders": [{"id": i} for i in order_ids]}),
        order_count=len(order_ids),
    )


def land_window(con: duckdb.DuckDBPyConnection, key: str, start: str, end: str, pages: list[OrderPage]):
    return land_pages(
        con,
        asset=ASSET,
        partition_key=key,
        window_start=utc(start),
        window_end=utc(end),
        requested_min=utc(start) - timedelta(minutes=10),
        requested_max=utc(end),
        pages=pages,
    )


def rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "select asset, partition_key, window_start, window_end, page_number, body::varchar"
        " from raw_order_page_bodies order by page_seq"
    ).fetchall()


def test_landing_a_window_again_replaces_it(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02-01:30", "2026-03-02T01:30", "2026-03-02T02:00", [make_page(1, [1, 2])])
        first = rows(con)
        result = land_window(
            con, "2026-03-02-01:30", "2026-03-02T01:30", "2026-03-02T02:00", [make_page(1, [1, 2])]
        )
        assert rows(con) == first
        assert (result.pages, result.orders, result.replaced_pages) == (1, 2, 1)


def test_a_range_replaces_the_windows_it_covers_and_nothing_else(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02-00:00", "2026-03-02T00:00", "2026-03-02T00:30", [make_page(1, [1])])
        land_window(con, "2026-03-02-00:30", "2026-03-02T00:30", "2026-03-02T01:00", [make_page(1, [2])])
        land_window(con, "2026-03-02-01:00", "2026-03-02T01:00", "2026-03-02T01:30", [make_page(1, [3])])
        land_window(
            con,
            "2026-03-02-00:00...2026-03-02-00:30",
            "2026-03-02T00:00",
            "2026-03-02T01:00",
            [make_page(1, [1, 2])],
        )
        assert [(r[1], r[5]) for r in rows(con)] == [
            ("2026-03-02-01:00", '{"orders":[{"id":3}]}'),
            ("2026-03-02-00:00...2026-03-02-00:30", '{"orders":[{"id":1},{"id":2}]}'),
        ]


def test_a_failure_mid_write_leaves_the_previous_contents(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.duckdb"
    with warehouse_connection(path) as con:
        land_window(con, "2026-03-02-01:30", "2026-03-02T01:30", "2026-03-02T02:00", [make_page(1, [1])])
        before = rows(con)

        # The failure comes after the old page was deleted and the new rows were written, before COMMIT.
        def append_then_fail(*args, **kwargs):
            append_parsed(*args, **kwargs)
            raise OSError("disk full")

        monkeypatch.setattr(raw_pages, "append_parsed", append_then_fail)
        with pytest.raises(OSError, match="disk full"):
            land_window(con, "2026-03-02-01:30", "2026-03-02T01:30", "2026-03-02T02:00", [make_page(1, [7])])
        assert rows(con) == before
        # A page that is not JSON fails the landing before anything is written.
        monkeypatch.undo()
        with pytest.raises(duckdb.Error):
            land_window(
                con,
                "2026-03-02-01:30",
                "2026-03-02T01:30",
                "2026-03-02T02:00",
                [make_page(1, [7]), make_page(2, [8], body=b'{"orders": [{"id": 8}')],
            )
        assert rows(con) == before
    # And so it is on disk: the failed transaction never reached the file.
    with warehouse_connection(path) as con:
        assert rows(con) == before


def test_refresh_pages_land_without_a_window(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02-01:30", "2026-03-02T01:30", "2026-03-02T02:00", [make_page(1, [1])])
        for _ in range(2):
            land_pages(
                con,
                asset="refresh",
                partition_key="run-1234",
                window_start=None,
                window_end=None,
                requested_min=None,
                requested_max=None,
                pages=[make_page(1, [1]), make_page(2, [5])],
            )
        landed = con.execute(
            "select asset, partition_key, window_start, page_number from raw_order_pages order by page_seq"
        ).fetchall()
        assert landed == [
            (ASSET, "2026-03-02-01:30", utc("2026-03-02T01:30"), 1),
            ("refresh", "run-1234", None, 1),
            ("refresh", "run-1234", None, 2),
        ]


def test_pages_land_verbatim_and_a_spool_gives_them_back(tmp_path: Path) -> None:
    pretty = b'{"orders": [\n  {"id": 1}\n]}'
    compact = b'{"orders":  [{"id": 2, "note": "a\\nb"}]}'
    spool = PageSpool(tmp_path).extend([make_page(1, [1], body=pretty), make_page(2, [2], body=compact)])
    assert [page.page_number for page in spool.spooled] == [1, 2]
    assert list(spool.bodies()) == [pretty, compact]
    assert (spool.pages, spool.orders) == (2, 2)
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02-01:30", "2026-03-02T01:30", "2026-03-02T02:00", spool)
        [(body,)] = con.execute(
            "select body::varchar from raw_order_page_bodies where page_number = 2"
        ).fetchall()
    assert body.encode() == compact  # verbatim, spaces and all


def test_connection_uses_utc_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "w.duckdb"
    with warehouse_connection(path) as con:
        [(zone,)] = con.execute("select current_setting('TimeZone')").fetchall()
    assert zone == "UTC"
    assert path.exists()


# --- The raw assets against the demo store over HTTP -------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock("2026-03-03T03:00:00Z")


@pytest.fixture
def store(clock: FrozenClock) -> DemoStore:
    return DemoStore(clock=clock, bucket_size=400, leak_rate=20.0)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def resources(store: DemoStore, tmp_path: Path) -> Iterator[dict[str, object]]:
    with serve(store) as base_url:
        yield {
            "shopify": ShopifyResource(
                store=base_url, access_token="demo-token", bucket_size=400, leak_rate=20.0, api="rest"
            ),
            "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        }


def landed_rows(resources: dict[str, object]) -> list[tuple]:
    warehouse = resources["duckdb"]
    assert isinstance(warehouse, WarehouseResource)
    with warehouse.get_connection() as con:
        return con.execute(
            "select asset, partition_key, window_start, window_end, requested_min, requested_max, page_number,"
            " api_version, request_path, order_count, body::varchar from raw_order_page_bodies order by page_seq"
        ).fetchall()


def landed_order_ids(resources: dict[str, object], partition_key: str) -> set[int]:
    warehouse = resources["duckdb"]
    assert isinstance(warehouse, WarehouseResource)
    with warehouse.get_connection() as con:
        found = con.execute(
            "select distinct unnest(from_json(body->'$.orders[*].id', '[\"BIGINT\"]'))"
            " from raw_order_page_bodies where partition_key = ?",
            [partition_key],
        ).fetchall()
    return {order_id for (order_id,) in found}


@pytest.mark.timeout(60)
def test_one_window_materialized_twice_gives_identical_rows(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    def run() -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [raw_updated_order_pages],
            resources=resources,
            partition_key="2026-03-02-12:00",
            instance=instance,
        )
        assert result.success
        return result

    run()
    first_rows = landed_rows(resources)
    second_result = run()
    rows = landed_rows(resources)
    assert rows == first_rows
    assert rows and sum(row[9] for row in rows) > 0
    assert {row[:2] for row in rows} == {("raw_updated_order_pages", "2026-03-02-12:00")}
    assert rows[0][4:6] == (utc("2026-03-02T11:50"), utc("2026-03-02T13:00"))
    assert "token" not in " ".join(row[8] for row in rows).lower()
    [second] = second_result.get_asset_materialization_events()
    metadata = {key: value.value for key, value in second.materialization.metadata.items()}
    assert metadata["pages"] == len(rows) == metadata["dagster/row_count"]
    assert metadata["orders"] == sum(row[9] for row in rows)
    assert metadata["replaced_pages"] == len(rows)
    assert metadata["requests"] >= 1 and metadata["retries"] == 0
    assert metadata["requested_min"] == "2026-03-02T11:50:00+00:00"
    assert metadata["requested_max"] == "2026-03-02T13:00:00+00:00"
    assert "rate_limit_wait_s" in metadata


@pytest.mark.timeout(120)
def test_a_two_day_range_is_one_run_with_a_materialization_per_window(
    resources: dict[str, object], store: DemoStore, instance: dg.DagsterInstance
) -> None:
    @dg.asset(deps=[raw_canceled_order_pages])
    def downstream_table() -> None:
        """Stands for the unpartitioned derived tables that follow the raw assets in a range run."""

    store.reset_counters()
    result = dg.materialize(
        [raw_canceled_order_pages, downstream_table],
        resources=resources,
        tags={RANGE_START_TAG: "2026-03-01-00:00", RANGE_END_TAG: "2026-03-02-23:30"},
        instance=instance,
    )
    assert result.success
    windows = [
        event.partition
        for event in result.get_asset_materialization_events()
        if event.asset_key == raw_canceled_order_pages.key
    ]
    assert len(windows) == len(set(windows)) == 96
    assert windows[0] == "2026-03-01-00:00" and windows[-1] == "2026-03-02-23:30"
    # One query for the whole range: a handful of requests, not one per window.
    assert store.stats()["admin_requests"] <= 5
    rows = landed_rows(resources)
    assert {row[1:6] for row in rows} == {
        (
            "2026-03-01-00:00...2026-03-02-23:30",
            utc("2026-03-01T00:00"),
            utc("2026-03-03T00:00"),
            utc("2026-02-28T23:50"),
            utc("2026-03-03T00:00"),
        )
    }
    assert sum(row[9] for row in rows) > 0


@pytest.mark.timeout(60)
def test_the_overlap_catches_an_order_that_became_visible_after_its_window_was_read(
    resources: dict[str, object], clock: FrozenClock, store: DemoStore, instance: dg.DagsterInstance
) -> None:
    def run(window: str) -> None:
        result = dg.materialize(
            [raw_canceled_order_pages],
            resources=resources,
            partition_key=window,
            instance=instance,
        )
        assert result.success

    # 10:05: the 09:30 window has closed and settled; its run sees nothing of the late order yet.
    clock.set("2026-03-02T10:05:00Z")
    run("2026-03-02-09:30")
    # The order was canceled at 09:59 but only shows up now, after its window was read (indexing lag).
    clock.set("2026-03-02T09:59:00Z")
    late = store.create_order()
    store.cancel_order(late["id"], "inventory")
    clock.set("2026-03-02T10:35:00Z")
    run("2026-03-02-10:00")

    assert late["id"] not in landed_order_ids(resources, "2026-03-02-09:30")
    assert late["id"] in landed_order_ids(resources, "2026-03-02-10:00")
