"""The raw layer keeps every fetch of one store: re-reads supersede without deleting, so a rebuild from the
page store gives the incremental tables exactly; another store's pages are refused; the catch-up plans from
what the warehouse holds; older warehouse files are migrated."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from cancel_pipeline.catch_up import plan_catch_up
from cancel_pipeline.settings import PipelineSettings, SettingsError, default_duckdb_path
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.raw_pages import (
    WrongStoreError,
    ensure_raw_order_pages,
    land_pages,
    recorded_store,
)
from cancel_pipeline.warehouse.schema import DERIVED_TABLES
from cancel_pipeline_tests.order_builders import line_item, order, refund, utc

DAY = (utc(2026, 3, 2), utc(2026, 3, 3))


def page(number: int, orders: list[object], fetched_at: datetime) -> OrderPage:
    return OrderPage(
        page_number=number,
        request_path="/admin/api/2026-07/orders.json?status=any&limit=250",
        api_version="2026-07",
        fetched_at=fetched_at,
        body=orjson.dumps({"orders": orders}),
        order_count=len(orders),
    )


def land(
    con: duckdb.DuckDBPyConnection,
    pages: list[OrderPage],
    *,
    until: datetime,
    supersede: bool = True,
    store: str = "demo",
    key: str = "2026-03-02",
    asset: str = "raw_updated_order_pages",
    window: tuple[datetime, datetime] = DAY,
) -> None:
    land_pages(
        con,
        asset=asset,
        partition_key=key,
        window_start=window[0],
        window_end=window[1],
        requested_min=window[0] - timedelta(minutes=10),
        requested_max=until,
        pages=pages,
        store=store,
        supersede=supersede,
    )


def tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    return {
        table: sorted(map(repr, con.execute(f"select * from {table}").fetchall())) for table in DERIVED_TABLES
    }


def test_a_full_refresh_after_re_reads_rebuilds_the_incremental_tables_exactly(tmp_path: Path) -> None:
    t = utc(2026, 3, 2, 9)
    edited = line_item(41, 3, current_quantity=2)  # one unit removed by an order edit, Shopify gives no time
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        # A tick at 10:00, then another at 11:00 that adds to the day.
        land(
            con,
            [
                page(
                    1,
                    [order(1, t), order(3, t + timedelta(minutes=5)), {"id": "bad-1"}],
                    t + timedelta(hours=1),
                ),
                page(2, [order(4, t + timedelta(minutes=20), line_items=[edited])], t + timedelta(hours=1)),
            ],
            until=t + timedelta(hours=1),
        )
        derive_new_pages(con)
        land(
            con,
            [page(1, [order(2, t + timedelta(minutes=70))], t + timedelta(hours=2))],
            until=t + timedelta(hours=2),
            supersede=False,
        )
        derive_new_pages(con)
        # The day is re-read whole later: orders 1, 3 and 4 moved on, so the versions first seen above are
        # held only by the superseded pages; the reject is gone; order 2 is read again, unchanged.
        later = t + timedelta(hours=5)
        land(
            con,
            [
                page(1, [order(1, later, cancelled_at=later, cancel_reason="customer")], later),
                page(
                    2,
                    [
                        order(2, t + timedelta(minutes=70)),
                        order(3, later, refunds=[refund(31, later, [(31, 1, "cancel")])]),
                        order(4, later, line_items=[edited], fulfillment_status="partial"),
                    ],
                    later,
                ),
            ],
            until=DAY[1],
        )
        derive_new_pages(con)
        incremental = tables(con)
        assert len(incremental["order_versions"]) == 7
        assert incremental["order_rejects"] == []
        derive_new_pages(con, full_refresh=True)
        assert tables(con) == incremental
        # The edit keeps the time of the first version that showed it, which only a superseded page holds.
        [(canceled_at,)] = con.execute(
            "select canceled_at from canceled_line_items where order_id = 4"
        ).fetchall()
        assert canceled_at == t + timedelta(minutes=20)


def test_a_warehouse_refuses_another_stores_pages_naming_both_and_the_fix(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with warehouse_connection(database) as con:
        land(con, [page(1, [order(1, utc(2026, 3, 2, 9))], utc(2026, 3, 2, 10))], until=DAY[1])
        assert recorded_store(con) == "demo"
        before = con.execute("select count(*) from raw_order_pages").fetchone()[0]
        with pytest.raises(WrongStoreError) as refused:
            land(
                con,
                [page(1, [order(9, utc(2026, 3, 2, 9))], utc(2026, 3, 2, 10))],
                until=DAY[1],
                store="my-shop.myshopify.com",
            )
        assert con.execute("select count(*) from raw_order_pages").fetchone()[0] == before
    message = str(refused.value)
    assert "'demo'" in message and "'my-shop.myshopify.com'" in message
    assert "CANCEL_PIPELINE_DUCKDB" in message and "data/<store>.duckdb" in message
    # The catch-up refuses before any run starts, whatever Dagster's run history holds.
    with pytest.raises(WrongStoreError, match="my-shop"):
        plan_catch_up(
            database, store="my-shop.myshopify.com", now=utc(2026, 3, 2, 12), lookback=timedelta(days=1)
        )


def test_the_default_warehouse_file_is_per_store() -> None:
    assert PipelineSettings.from_env({}).duckdb_path == "data/demo.duckdb"
    for store in ("my-shop", "my-shop.myshopify.com", " https://my-shop.myshopify.com/ "):
        assert PipelineSettings.from_env({"SHOPIFY_STORE": store}).duckdb_path == "data/my-shop.duckdb"
    assert default_duckdb_path("http://127.0.0.1:8765") == "data/127.0.0.1-8765.duckdb"
    chosen = {"SHOPIFY_STORE": "my-shop", "CANCEL_PIPELINE_DUCKDB": "elsewhere/w.duckdb"}
    assert PipelineSettings.from_env(chosen).duckdb_path == "elsewhere/w.duckdb"
    retention = {"CANCEL_PIPELINE_SUPERSEDED_RETENTION_DAYS": "30"}
    assert PipelineSettings.from_env(retention).superseded_retention_days == 30
    with pytest.raises(SettingsError, match="CANCEL_PIPELINE_SUPERSEDED_RETENTION_DAYS"):
        PipelineSettings.from_env({"CANCEL_PIPELINE_SUPERSEDED_RETENTION_DAYS": "0"})
    assert ShopifyResource().store_identity == "demo"
    assert ShopifyResource(store="my-shop").store_identity == "my-shop.myshopify.com"
    assert ShopifyResource(store="http://user:secret@127.0.0.1:8765").store_identity == "127.0.0.1:8765"


def test_the_catch_up_plans_from_what_the_warehouse_holds(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    now = utc(2026, 3, 2, 12, 10)
    with warehouse_connection(database) as con:
        # The cancellation feed holds 2026-03-01 whole and 2026-03-02 up to a tick at 11:30.
        canceled = "raw_canceled_order_pages"
        first_day = (utc(2026, 3, 1), utc(2026, 3, 2))
        land(con, [page(1, [], now)], until=first_day[1], asset=canceled, key="2026-03-01", window=first_day)
        land(con, [page(1, [], now)], until=utc(2026, 3, 2, 11, 30), asset=canceled, supersede=False)
    plans = {
        plan.asset_name: plan
        for plan in plan_catch_up(database, store="demo", now=now, lookback=timedelta(days=2))
    }
    assert (plans[canceled].ranges, plans[canceled].top_ups) == (
        [("2026-02-28", "2026-02-28")],
        ["2026-03-02"],
    )
    assert (plans[canceled].windows, plans[canceled].runs) == (2, 2)
    updated = plans["raw_updated_order_pages"]
    assert (updated.ranges, updated.top_ups, updated.windows) == ([("2026-02-28", "2026-03-02")], [], 3)


OLD_RAW_ORDER_PAGES = """
create sequence raw_order_pages_seq;
create table raw_order_pages (
    page_seq bigint not null primary key, asset varchar not null, partition_key varchar not null,
    window_start timestamptz, window_end timestamptz, requested_min timestamptz, requested_max timestamptz,
    page_number integer not null, fetched_at timestamptz not null, api_version varchar not null,
    request_path varchar not null, order_count integer not null, body_file varchar not null,
    body_bytes bigint not null, unique (asset, partition_key, page_number)
);
"""


def test_a_warehouse_of_the_previous_release_is_migrated_in_place(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with duckdb.connect(str(database)) as old:
        old.execute(OLD_RAW_ORDER_PAGES)
        old.execute(
            "insert into raw_order_pages values (nextval('raw_order_pages_seq'), 'raw_updated_order_pages',"
            " '2026-03-02-09:00', '2026-03-02 09:00+00', '2026-03-02 10:00+00', '2026-03-02 08:50+00',"
            " '2026-03-02 10:00+00', 1, '2026-03-02 10:05+00', '2026-07', '/orders.json', 0,"
            " 'raw_updated_order_pages/old/page-000001.json', 14)"
        )
    with warehouse_connection(database) as con:
        # A derivation may be the first to open it: it migrates the file, then derives its page.
        assert derive_new_pages(con).pages_processed == 1
        ensure_raw_order_pages(con)
        [(key, superseded)] = con.execute(
            "select partition_key, superseded_at from raw_order_pages"
        ).fetchall()
        assert (key, superseded) == ("2026-03-02-09:00", None)
        # The day's re-read supersedes the old 30-minute page, and the page numbers may repeat now.
        land(con, [page(1, [], utc(2026, 3, 3, 1))], until=DAY[1])
        land(con, [page(1, [], utc(2026, 3, 3, 1))], until=DAY[1], supersede=False)
        assert con.execute(
            "select partition_key, page_number, superseded_at is not null from raw_order_pages order by page_seq"
        ).fetchall() == [("2026-03-02-09:00", 1, True), ("2026-03-02", 1, False), ("2026-03-02", 1, False)]
        # A file of the previous release adopts the store of its first landing after the upgrade.
        assert recorded_store(con) == "demo"
