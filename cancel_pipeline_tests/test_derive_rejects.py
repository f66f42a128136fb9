"""Order objects that cannot be typed land in order_rejects with a reason, and never touch the other tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.typed_orders import REJECT_REASONS
from cancel_pipeline_tests.order_builders import (
    land_page,
    line_item,
    order,
    refund,
    table_rows,
    utc,
)

T0 = utc(2025, 3, 3, 15)


def with_field(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def spoil(obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, name: value}

    return spoil


def without_field(name: str) -> Callable[[dict[str, Any]], Any]:
    def spoil(obj: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in obj.items() if key != name}

    return spoil


def with_refund_created_at(value: str) -> Callable[[dict[str, Any]], Any]:
    def spoil(obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "refunds": [refund(1, value, [(obj["line_items"][0]["id"], 1, "cancel")])]}

    return spoil


SPOILED: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("id_not_integer", with_field("id", "5801234567001"), "id="),
    ("id_not_integer", with_field("id", 12.5), "id="),
    ("id_not_integer", without_field("id"), "id=missing"),
    ("id_not_integer", lambda obj: "not an order", "not an object"),
    ("created_at_missing", without_field("created_at"), "created_at missing"),
    ("created_at_missing", with_field("created_at", None), "created_at missing"),
    ("created_at_unparseable", with_field("created_at", "yesterday"), "created_at=yesterday"),
    ("updated_at_missing", without_field("updated_at"), "updated_at missing"),
    ("updated_at_unparseable", with_field("updated_at", "2025-02-30T10:00:00-05:00"), "2025-02-30"),
    ("cancelled_at_unparseable", with_field("cancelled_at", "soon"), "cancelled_at=soon"),
    ("closed_at_unparseable", with_field("closed_at", "13/03/2025"), "closed_at=13/03/2025"),
    ("total_price_unparseable", with_field("total_price", "12,50 EUR"), "total_price=12,50 EUR"),
    ("line_items_invalid", without_field("line_items"), "line_items=missing"),
    ("line_items_invalid", with_field("line_items", {"id": 1}), "line_items="),
    ("line_items_invalid", with_field("line_items", [{"id": "a", "quantity": 1}]), "line_items="),
    ("line_items_invalid", with_field("line_items", [{"id": 1, "quantity": "2"}]), "line_items="),
    ("line_items_invalid", with_field("line_items", [line_item(1, 1), line_item(1, 2)]), "line_items="),
    ("refunds_invalid", with_field("refunds", "none"), "refunds="),
    ("refund_created_at_unparseable", with_refund_created_at("not a time"), "refund created_at=not a time"),
]


def test_every_listed_reason_is_exercised():
    assert {reason for reason, _, _ in SPOILED} == set(REJECT_REASONS)


@pytest.mark.parametrize(
    ("reason", "spoil", "detail"), SPOILED, ids=[f"{reason}-{n}" for n, (reason, _, _) in enumerate(SPOILED)]
)
def test_a_spoiled_order_is_rejected_with_its_reason_and_the_rest_of_the_page_lands(
    con, reason, spoil, detail
):
    good = order(100, T0, cancelled_at=T0)
    spoiled = spoil(order(200, T0, cancelled_at=T0))
    page_seq = land_page(con, [good, spoiled], partition_key="2025-03-03-15:00", page_number=3)

    result = derive_new_pages(con)

    assert result.rejects_added == 1
    [reject] = table_rows(con, "select * from order_rejects")
    assert reject["reason"] == reason
    assert detail in reject["detail"]
    assert (reject["asset"], reject["partition_key"], reject["page_number"], reject["page_seq"]) == (
        "raw_updated_order_pages",
        "2025-03-03-15:00",
        3,
        page_seq,
    )
    assert reject["position"] == 2
    assert reject["request_path"].startswith("/admin/api/")
    assert reject["raw_order"] is not None
    expected_id = 200 if reason != "id_not_integer" else None
    assert reject["order_id"] == expected_id
    assert [row["order_id"] for row in table_rows(con, "select order_id from order_versions")] == [100]
    assert [row["order_id"] for row in table_rows(con, "select order_id from canceled_orders")] == [100]


def test_a_rejected_newer_version_leaves_the_older_good_version_in_place(con):
    land_page(con, [order(300, T0)], page_number=1)
    derive_new_pages(con)

    newer = order(300, T0 + timedelta(hours=1), cancelled_at=T0 + timedelta(hours=1), total_price="n/a")
    land_page(con, [newer], page_number=2)
    result = derive_new_pages(con)

    assert result.rejects_added == 1
    assert table_rows(con, "select order_id, reason from order_rejects") == [
        {"order_id": 300, "reason": "total_price_unparseable"}
    ]
    assert table_rows(con, "select order_id, updated_at, status from orders") == [
        {"order_id": 300, "updated_at": T0, "status": "created"}
    ]
    assert table_rows(con, "select * from canceled_orders") == []


def test_refetching_a_page_replaces_its_rejects(con):
    land_page(con, [order(400, T0, created_at=None) | {"created_at": "bad"}], page_number=1)
    derive_new_pages(con)
    assert con.execute("select count(*) from order_rejects").fetchone()[0] == 1

    land_page(con, [order(400, T0)], page_number=1)
    derive_new_pages(con)

    assert con.execute("select count(*) from order_rejects").fetchone()[0] == 0
    assert con.execute("select count(*) from orders").fetchone()[0] == 1
