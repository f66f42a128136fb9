"""The cancellation rules of the table contract, on realistic Shopify payloads derived through real DuckDB."""

from __future__ import annotations

from datetime import timedelta

import duckdb

from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline_tests.order_builders import (
    land_page,
    line_item,
    order,
    refund,
    table_rows,
    utc,
)

T0 = utc(2025, 3, 3, 15)


def canceled_lines(con: duckdb.DuckDBPyConnection, order_id: int) -> dict[int, dict]:
    rows = table_rows(con, "select * from canceled_line_items where order_id = ?", order_id)
    return {row["line_item_id"]: row for row in rows}


def test_full_cancel_lists_the_order_and_every_line_at_its_quantity(con):
    cancelled = T0 + timedelta(minutes=5)
    land_page(
        con,
        [
            order(
                1,
                cancelled,
                line_items=[line_item(11, 2), line_item(12, 3)],
                cancelled_at=cancelled,
                cancel_reason="inventory",
                financial_status="voided",
            )
        ],
    )
    derive_new_pages(con)

    [canceled] = table_rows(con, "select * from canceled_orders")
    assert canceled["order_id"] == 1
    assert canceled["cancelled_at"] == cancelled
    assert canceled["cancel_reason"] == "inventory"
    assert canceled["financial_status"] == "voided"
    lines = canceled_lines(con, 1)
    assert {lid: (r["quantity"], r["canceled_quantity"]) for lid, r in lines.items()} == {
        11: (2, 2),
        12: (3, 3),
    }
    assert all(r["order_canceled"] and r["canceled_at"] == cancelled for r in lines.values())
    [status] = con.execute("select status from orders where order_id = 1").fetchone()
    assert status == "canceled"


def test_partial_cancel_by_refund_lists_only_the_canceled_units(con):
    refunded = T0 + timedelta(minutes=3)
    land_page(
        con,
        [
            order(
                2,
                refunded,
                line_items=[line_item(21, 2, current_quantity=1), line_item(22, 1)],
                refunds=[refund(201, refunded, [(21, 1, "cancel")])],
                financial_status="partially_refunded",
            )
        ],
    )
    derive_new_pages(con)

    assert table_rows(con, "select * from canceled_orders") == []
    lines = canceled_lines(con, 2)
    assert list(lines) == [21]
    assert lines[21]["canceled_quantity"] == 1
    assert lines[21]["canceled_at"] == refunded
    assert lines[21]["order_canceled"] is False


def test_two_partial_cancels_on_one_line_sum_and_take_the_latest_refund_time(con):
    first, second = T0, T0 + timedelta(hours=1)
    land_page(
        con,
        [
            order(
                3,
                second + timedelta(seconds=1),
                line_items=[line_item(31, 5, current_quantity=2)],
                refunds=[
                    refund(301, second, [(31, 2, "cancel")]),
                    refund(302, first, [(31, 1, "cancel")]),
                ],
            )
        ],
    )
    derive_new_pages(con)

    line = canceled_lines(con, 3)[31]
    assert line["canceled_quantity"] == 3
    assert line["canceled_at"] == second


def test_edit_removal_without_a_refund_is_canceled_at_the_orders_updated_at(con):
    edited = T0 + timedelta(minutes=42)
    land_page(con, [order(4, edited, line_items=[line_item(41, 3, current_quantity=1), line_item(42, 1)])])
    derive_new_pages(con)

    lines = canceled_lines(con, 4)
    assert list(lines) == [41]
    assert lines[41]["canceled_quantity"] == 2
    assert lines[41]["canceled_at"] == edited


def test_an_edit_removal_keeps_the_time_of_the_first_version_that_shows_it(con):
    # v1: nothing removed; v2: an edit removes 1 of 3; v3: the order is fulfilled later, the edit unchanged;
    # v4: a second edit removes another unit. Versions arrive out of order, as windows of a backfill may.
    v1, v2, v3, v4 = (T0 + timedelta(hours=hours) for hours in (0, 1, 5, 9))
    versions = {
        v1: order(7, v1, line_items=[line_item(71, 3, current_quantity=3)]),
        v2: order(7, v2, line_items=[line_item(71, 3, current_quantity=2)]),
        v3: order(7, v3, line_items=[line_item(71, 3, current_quantity=2)], fulfillment_status="partial"),
        v4: order(7, v4, line_items=[line_item(71, 3, current_quantity=1)], fulfillment_status="partial"),
    }
    for page_number, version in enumerate((v3, v1, v2), start=1):
        land_page(con, [versions[version]], page_number=page_number)
    derive_new_pages(con)
    line = canceled_lines(con, 7)[71]
    assert (line["canceled_quantity"], line["canceled_at"]) == (1, v2)  # not v3, the latest version

    land_page(con, [versions[v4]], page_number=4)
    derive_new_pages(con)
    line = canceled_lines(con, 7)[71]
    assert (line["canceled_quantity"], line["canceled_at"]) == (2, v4)


def test_a_return_is_not_a_cancellation(con):
    land_page(
        con,
        [
            order(
                5,
                T0,
                line_items=[line_item(51, 2, current_quantity=1)],
                refunds=[refund(501, T0, [(51, 1, "return")])],
                fulfillment_status="fulfilled",
            )
        ],
    )
    derive_new_pages(con)

    assert canceled_lines(con, 5) == {}
    [status] = con.execute("select status from orders where order_id = 5").fetchone()
    assert status == "completed"


def test_no_restock_is_not_a_cancellation_but_counts_in_the_edit_subtraction(con):
    # Line 61: 4 ordered, 1 refunded without restock, 1 canceled, current 1 -> 1 edit-removed + 1 canceled.
    # Line 62: refunded without restock only -> nothing canceled.
    land_page(
        con,
        [
            order(
                6,
                T0 + timedelta(minutes=9),
                line_items=[line_item(61, 4, current_quantity=1), line_item(62, 1, current_quantity=0)],
                refunds=[
                    refund(601, T0, [(61, 1, "no_restock"), (62, 1, "no_restock")]),
                    refund(602, T0 + timedelta(minutes=5), [(61, 1, "cancel")]),
                ],
            )
        ],
    )
    derive_new_pages(con)

    lines = canceled_lines(con, 6)
    assert list(lines) == [61]
    assert lines[61]["canceled_quantity"] == 2
    assert lines[61]["canceled_at"] == T0 + timedelta(minutes=5)


def test_partial_then_full_cancel_counts_every_line_at_quantity(con):
    partial_at, full_at = T0, T0 + timedelta(hours=2)
    lines = [line_item(71, 3, current_quantity=2), line_item(72, 1)]
    land_page(
        con,
        [order(7, partial_at, line_items=lines, refunds=[refund(701, partial_at, [(71, 1, "cancel")])])],
        page_number=1,
    )
    derive_new_pages(con)
    assert canceled_lines(con, 7)[71]["canceled_quantity"] == 1

    full_lines = [line_item(71, 3, current_quantity=0), line_item(72, 1, current_quantity=0)]
    land_page(
        con,
        [
            order(
                7,
                full_at,
                line_items=full_lines,
                refunds=[refund(701, partial_at, [(71, 1, "cancel")])],
                cancelled_at=full_at,
            )
        ],
        page_number=2,
    )
    derive_new_pages(con)

    after = canceled_lines(con, 7)
    assert {lid: r["canceled_quantity"] for lid, r in after.items()} == {71: 3, 72: 1}
    assert all(r["order_canceled"] and r["canceled_at"] == full_at for r in after.values())
    assert [r["order_id"] for r in table_rows(con, "select order_id from canceled_orders")] == [7]


def test_test_orders_are_kept_and_flagged(con):
    land_page(con, [order(8, T0, cancelled_at=T0, test=True), order(9, T0, test=True)])
    derive_new_pages(con)

    assert table_rows(con, "select order_id, test from canceled_orders") == [{"order_id": 8, "test": True}]
    assert table_rows(con, "select order_id, test from orders order by order_id") == [
        {"order_id": 8, "test": True},
        {"order_id": 9, "test": True},
    ]


def test_an_update_on_a_window_boundary_seen_in_two_windows_merges_once(con):
    boundary = utc(2025, 3, 3, 11)
    on_boundary = order(10, boundary, cancelled_at=boundary)
    land_page(con, [on_boundary], partition_key="2025-03-03-10:00", fetched_at=utc(2025, 3, 3, 11, 5))
    land_page(con, [on_boundary], partition_key="2025-03-03-11:00", fetched_at=utc(2025, 3, 3, 12, 5))
    result = derive_new_pages(con)

    assert result.new_versions == 1
    [version] = table_rows(con, "select * from order_versions")
    assert version["first_fetched_at"] == utc(2025, 3, 3, 11, 5)
    assert version["last_fetched_at"] == utc(2025, 3, 3, 12, 5)
    assert version["partition_key"] == "2025-03-03-11:00"
    for table in ("canceled_orders", "orders"):
        assert con.execute(f"select count(*) from {table}").fetchone()[0] == 1
    assert con.execute("select count(*) from canceled_line_items").fetchone()[0] == 1


def test_many_orders_sharing_one_updated_at_second_are_all_kept(con):
    second = utc(2025, 3, 3, 10, 30, 15)
    orders = [order(1000 + n, second, cancelled_at=second) for n in range(600)]
    for page_number, start in enumerate(range(0, 600, 250), start=1):
        land_page(con, orders[start : start + 250], page_number=page_number)
    result = derive_new_pages(con, batch_pages=2)

    assert result.pages_processed == 3
    assert result.new_versions == 600
    assert con.execute("select count(*), count(distinct order_id) from canceled_orders").fetchone() == (
        600,
        600,
    )
    assert con.execute("select count(*) from canceled_line_items").fetchone()[0] == 600


def test_pages_are_derived_in_batches_bounded_by_orders_as_well_as_pages(con):
    # A bulk chunk holds thousands of orders: batching by pages alone folded a whole 1M-order backfill at once.
    second = utc(2025, 3, 3, 10, 30, 15)
    sizes = [3, 3, 5, 1]
    first = 1000
    for page_number, size in enumerate(sizes, start=1):
        orders = [order(first + n, second, cancelled_at=second) for n in range(size)]
        land_page(con, orders, page_number=page_number)
        first += size
    result = derive_new_pages(con, batch_orders=4)

    assert result.batches == 4  # [3], [3], [5] (one page alone may hold more), [1]
    assert result.pages_processed == 4 and result.new_versions == 12
    assert con.execute("select count(*) from canceled_orders").fetchone()[0] == 12


def test_batches_of_pages_fill_up_to_the_order_bound(con):
    second = utc(2025, 3, 3, 10, 30, 15)
    for page_number in range(1, 5):
        land_page(con, [order(1000 + page_number, second, cancelled_at=second)], page_number=page_number)
    assert derive_new_pages(con, batch_orders=2, batch_pages=400).batches == 2
