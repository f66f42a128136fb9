"""The warehouse schema helpers and the SQL behind the asset checks."""

from __future__ import annotations

from datetime import timedelta

from cancel_pipeline.stuck_rule import DEFAULT_STUCK_THRESHOLDS
from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.queries import (
    duplicate_keys,
    new_rejects,
    reject_reason_counts,
    stuck_orders,
)
from cancel_pipeline.warehouse.schema import KEY_COLUMNS, derived_table_schemas
from cancel_pipeline_tests.order_builders import land_page, order, utc

NOW = utc(2025, 3, 10, 12)


def test_derived_tables_have_the_contract_columns_and_types(con):
    schemas = derived_table_schemas(con)
    assert [name for name, _ in schemas["canceled_orders"]] == [
        "order_id", "order_name", "cancelled_at", "cancel_reason", "financial_status",
        "fulfillment_status", "source_name", "currency", "total_price", "created_at", "updated_at", "test",
    ]  # fmt: skip
    assert [name for name, _ in schemas["canceled_line_items"]] == [
        "order_id", "line_item_id", "sku", "title", "variant_id", "product_id", "quantity",
        "canceled_quantity", "canceled_at", "order_canceled", "updated_at",
    ]  # fmt: skip
    assert [name for name, _ in schemas["orders"]] == [
        "order_id", "order_name", "created_at", "updated_at", "source_name", "financial_status",
        "fulfillment_status", "cancelled_at", "closed_at", "status", "test", "last_fetched_at",
    ]  # fmt: skip
    types = dict(schemas["canceled_orders"])
    assert types["order_id"] == "BIGINT"
    assert types["total_price"] == "DECIMAL(18,2)"
    assert types["cancelled_at"] == "TIMESTAMP WITH TIME ZONE"
    assert set(schemas) == set(KEY_COLUMNS)


def test_the_session_shows_times_in_utc(con):
    assert con.execute("select current_setting('TimeZone')").fetchone()[0] == "UTC"
    assert con.execute("select '2025-03-03T10:15:00-05:00'::timestamptz::varchar").fetchone()[0] == (
        "2025-03-03 15:15:00+00"
    )


def test_stuck_orders_apply_each_sources_threshold_strictly_oldest_first(con):
    land_page(
        con,
        [
            order(1, NOW - timedelta(minutes=61), created_at=NOW - timedelta(minutes=61), source_name="pos"),
            order(2, NOW - timedelta(minutes=60), created_at=NOW - timedelta(minutes=60), source_name="pos"),
            order(3, NOW, created_at=NOW - timedelta(hours=30), source_name="web"),
            order(4, NOW, created_at=NOW - timedelta(hours=30), source_name="shopify_draft_order"),
            order(5, NOW, created_at=NOW - timedelta(hours=49), source_name="shopify_draft_order"),
            order(6, NOW, created_at=NOW - timedelta(hours=25), source_name="iphone"),
            order(7, NOW, created_at=NOW - timedelta(hours=23), source_name="iphone"),
            order(8, NOW, created_at=NOW - timedelta(days=5), source_name="web", test=True),
            order(9, NOW, created_at=NOW - timedelta(days=5), fulfillment_status="fulfilled"),
            order(10, NOW, created_at=NOW - timedelta(days=5), fulfillment_status="partial"),
            order(11, NOW, created_at=NOW - timedelta(days=5), cancelled_at=NOW),
        ],
        fetched_at=NOW - timedelta(minutes=1),
    )
    derive_new_pages(con)

    stuck = stuck_orders(con, NOW)

    assert [s.order_id for s in stuck] == [5, 3, 6, 1]
    assert stuck[0].age == timedelta(hours=49)
    assert stuck[0].source_name == "shopify_draft_order"
    assert stuck[0].order_name == "#5"
    assert stuck[-1].last_fetched_at == NOW - timedelta(minutes=1)
    assert [s.order_id for s in stuck_orders(con, NOW, limit=2)] == [5, 3]
    loose = {**DEFAULT_STUCK_THRESHOLDS, "web": timedelta(days=2)}
    assert [s.order_id for s in stuck_orders(con, NOW, loose)] == [5, 6, 1]


def test_stuck_orders_leave_once_a_newer_fulfilled_version_arrives(con):
    created = NOW - timedelta(days=2)
    land_page(con, [order(20, created, created_at=created)], page_number=1)
    derive_new_pages(con)
    assert [s.order_id for s in stuck_orders(con, NOW)] == [20]

    land_page(con, [order(20, NOW, created_at=created, fulfillment_status="fulfilled")], page_number=2)
    derive_new_pages(con)

    assert stuck_orders(con, NOW) == []


def test_duplicate_keys_are_reported_per_key(con):
    land_page(con, [order(30, NOW, cancelled_at=NOW), order(31, NOW, cancelled_at=NOW)])
    derive_new_pages(con)
    assert duplicate_keys(con, "canceled_orders") == []
    assert duplicate_keys(con, "canceled_line_items") == []

    con.execute("insert into canceled_orders select * from canceled_orders where order_id = 31")

    assert duplicate_keys(con, "canceled_orders") == [{"order_id": 31, "rows": 2}]
    assert duplicate_keys(con, "orders") == []


def test_new_rejects_are_those_of_the_latest_derivation(con):
    land_page(con, [{"id": "a"}, order(40, NOW)], page_number=1)
    derive_new_pages(con)
    assert [r["reason"] for r in new_rejects(con)] == ["id_not_integer"]

    land_page(
        con, [order(41, NOW) | {"updated_at": None}, order(42, NOW) | {"closed_at": "x"}], page_number=2
    )
    derive_new_pages(con)
    latest = new_rejects(con)
    assert [(r["order_id"], r["reason"], r["position"]) for r in latest] == [
        (41, "updated_at_missing", 1),
        (42, "closed_at_unparseable", 2),
    ]
    assert len(new_rejects(con, after_page_seq=0)) == 3
    assert reject_reason_counts(new_rejects(con, after_page_seq=0)) == {
        "closed_at_unparseable": 1,
        "id_not_integer": 1,
        "updated_at_missing": 1,
    }

    derive_new_pages(con)
    assert new_rejects(con) == []
