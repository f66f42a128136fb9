"""Version history, latest-version-wins, idempotence and atomicity of the derivation."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from cancel_pipeline.warehouse import derive
from cancel_pipeline.warehouse.derive import derive_new_pages, read_watermark
from cancel_pipeline.warehouse.schema import DERIVED_TABLES
from cancel_pipeline_tests.order_builders import (
    land_page,
    line_item,
    order,
    refund,
    table_rows,
    utc,
)

T0 = utc(2025, 3, 3, 15)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    tables = (*DERIVED_TABLES, "derivation_state")
    return {table: sorted(map(repr, con.execute(f"select * from {table}").fetchall())) for table in tables}


def test_a_version_older_than_the_stored_one_does_not_overwrite(con):
    newer = order(1, T0 + timedelta(hours=1), fulfillment_status="fulfilled")
    land_page(con, [newer], page_number=1)
    derive_new_pages(con)

    land_page(con, [order(1, T0)], page_number=2, fetched_at=utc(2025, 3, 3, 18))
    derive_new_pages(con)

    assert table_rows(con, "select updated_at, status from orders") == [
        {"updated_at": T0 + timedelta(hours=1), "status": "completed"}
    ]
    older = table_rows(con, "select * from order_versions where updated_at = ?", T0)[0]
    assert older["superseded_by_updated_at"] == T0 + timedelta(hours=1)


def test_a_later_version_marks_the_earlier_superseded_when_and_by_which(con):
    land_page(con, [order(2, T0)], page_number=1, fetched_at=utc(2025, 3, 3, 16))
    derive_new_pages(con)
    land_page(
        con, [order(2, T0 + timedelta(hours=3), closed_at=T0)], page_number=2, fetched_at=utc(2025, 3, 3, 19)
    )
    derive_new_pages(con)

    versions = table_rows(
        con,
        "select updated_at, superseded_at, superseded_by_updated_at from order_versions order by updated_at",
    )
    assert versions == [
        {
            "updated_at": T0,
            "superseded_at": utc(2025, 3, 3, 19),
            "superseded_by_updated_at": T0 + timedelta(hours=3),
        },
        {"updated_at": T0 + timedelta(hours=3), "superseded_at": None, "superseded_by_updated_at": None},
    ]
    assert table_rows(con, "select status, last_fetched_at from orders") == [
        {"status": "completed", "last_fetched_at": utc(2025, 3, 3, 19)}
    ]


def test_an_equal_updated_at_takes_the_content_of_the_last_fetch(con):
    land_page(con, [order(3, T0, financial_status="pending")], page_number=1)
    land_page(con, [order(3, T0, financial_status="paid")], page_number=2)
    derive_new_pages(con)

    assert table_rows(con, "select financial_status from orders") == [{"financial_status": "paid"}]
    assert con.execute("select count(*) from order_versions").fetchone()[0] == 1


def test_rederiving_changes_nothing_and_a_full_refresh_rebuilds_the_same_tables(con):
    land_page(
        con,
        [
            order(4, T0, line_items=[line_item(41, 2, current_quantity=1)]),
            order(5, T0, cancelled_at=T0),
            {"id": "broken"},
        ],
        page_number=1,
    )
    land_page(
        con,
        [order(4, T0 + timedelta(hours=1), refunds=[refund(1, T0, [(41, 1, "cancel")])])],
        page_number=2,
    )
    derive_new_pages(con, now=utc(2025, 3, 4))
    before = snapshot(con)

    again = derive_new_pages(con, now=utc(2025, 3, 4))
    assert again.pages_processed == 0
    assert all(sum(vars(c).values()) == 0 for c in again.table_changes.values())
    assert again.watermark_after == again.watermark_before == 2
    assert {t: rows for t, rows in snapshot(con).items() if t != "derivation_state"} == {
        t: rows for t, rows in before.items() if t != "derivation_state"
    }

    # A full refresh parses the verbatim pages again: parsed objects lost or stale do not matter.
    con.execute("delete from raw_order_objects")
    rebuilt = derive_new_pages(con, now=utc(2025, 3, 4), full_refresh=True, batch_pages=1)
    assert rebuilt.pages_processed == 2
    assert con.execute("select count(*) from raw_order_objects").fetchone()[0] == 4
    after = snapshot(con)
    assert {t: rows for t, rows in after.items() if t != "derivation_state"} == {
        t: rows for t, rows in before.items() if t != "derivation_state"
    }


def test_a_failure_half_way_leaves_every_table_and_the_watermark_unchanged(con, monkeypatch):
    land_page(con, [order(6, T0)], page_number=1)
    derive_new_pages(con)
    before = snapshot(con)
    watermark = read_watermark(con)

    land_page(con, [order(6, T0 + timedelta(hours=1), cancelled_at=T0), {"id": None}], page_number=2)
    land_page(con, [order(7, T0, cancelled_at=T0)], page_number=3)
    original = derive._mark_supersession
    calls = []

    def fail_on_second_batch(connection):
        original(connection)
        calls.append(1)
        if len(calls) == 2:
            # By now the first batch's rejects, versions and current rows are written.
            raise RuntimeError("injected failure")

    monkeypatch.setattr(derive, "_mark_supersession", fail_on_second_batch)
    with pytest.raises(RuntimeError, match="injected failure"):
        derive_new_pages(con, batch_pages=1)

    assert len(calls) == 2
    assert snapshot(con) == before
    assert read_watermark(con) == watermark

    monkeypatch.undo()
    result = derive_new_pages(con, batch_pages=1)
    assert result.pages_processed == 2
    assert con.execute("select count(*) from canceled_orders").fetchone()[0] == 2


def test_the_result_counts_changes_and_previews_the_canceled_rows(con):
    land_page(
        con,
        [order(8, T0), order(9, T0, cancelled_at=T0), {"id": 10, "created_at": None}],
        page_number=1,
    )
    first = derive_new_pages(con)

    assert (first.pages_processed, first.orders_seen, first.new_versions, first.rejects_added) == (1, 3, 2, 1)
    assert first.table_changes["orders"] == derive.TableChanges(inserted=2)
    assert [row["order_id"] for row in first.canceled_orders_preview] == [9]
    assert [row["order_id"] for row in first.canceled_line_items_preview] == [9]
    assert first.row_counts == {
        "order_versions": 2,
        "order_rejects": 1,
        "canceled_orders": 1,
        "canceled_line_items": 1,
        "orders": 2,
    }

    land_page(con, [order(8, T0 + timedelta(hours=1), cancelled_at=T0 + timedelta(hours=1))], page_number=2)
    second = derive_new_pages(con)

    assert second.table_changes["orders"] == derive.TableChanges(updated=1)
    assert second.table_changes["canceled_orders"] == derive.TableChanges(inserted=1)
    assert [row["order_id"] for row in second.canceled_orders_preview] == [8]
    assert second.counts()["canceled_orders_row_count"] == 2
    assert second.watermark_before == first.watermark_after
