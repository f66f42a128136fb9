"""Malformed order records: the kinds the demo store serves, and how each one breaks a rendered order."""

from __future__ import annotations

from typing import Any

MALFORMED_KINDS = (
    "id_string",
    "id_float",
    "created_at_missing",
    "updated_at_unparseable",
    "cancelled_at_unparseable",
    "closed_at_unparseable",
    "refund_created_at_unparseable",
    "total_price_not_number",
    "line_items_not_list",
    "line_item_id_missing",
    "line_item_quantity_not_int",
)

SCENARIO_FOR_KIND = {
    # These kinds need the broken field to be present, so their order gets a timeline that sets it early.
    "cancelled_at_unparseable": "cancel",
    "closed_at_unparseable": "fulfilled_closed",
    "refund_created_at_unparseable": "partial_cancel",
}


def break_order(order: dict[str, Any], kind: str) -> None:
    """Damage a rendered order in place the way `kind` says; fields not yet present are left alone."""
    if kind == "id_string":
        order["id"] = "abc"
    elif kind == "id_float":
        order["id"] = 1.5
    elif kind == "created_at_missing":
        del order["created_at"]
    elif kind == "updated_at_unparseable":
        order["updated_at"] = "not-a-date"
    elif kind == "cancelled_at_unparseable":
        if order.get("cancelled_at") is not None:
            order["cancelled_at"] = "2024-13-45T99:99:99"
    elif kind == "closed_at_unparseable":
        if order.get("closed_at") is not None:
            order["closed_at"] = "yesterday"
    elif kind == "refund_created_at_unparseable":
        for refund in order.get("refunds", []):
            refund["created_at"] = "32/01/2024 25:00"
    elif kind == "total_price_not_number":
        order["total_price"] = "N/A"
    elif kind == "line_items_not_list":
        order["line_items"] = {"error": "line items unavailable"}
    elif kind == "line_item_id_missing":
        if order["line_items"]:
            del order["line_items"][0]["id"]
    elif kind == "line_item_quantity_not_int":
        if order["line_items"]:
            order["line_items"][0]["quantity"] = "two"
    else:
        raise ValueError(f"unknown malformation {kind!r}")
