"""Builders of realistic Shopify REST order JSON, and a plain-SQL way to land pages of it as raw.

Times are written the way Shopify writes them: ISO 8601 with the shop's offset (here -05:00), not `Z`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import duckdb

from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.warehouse.raw_pages import land_page as land_raw_page
from cancel_pipeline.warehouse.schema import ensure_schema

SHOP_OFFSET = timezone(timedelta(hours=-5))


def shop_time(moment: datetime) -> str:
    """`moment` as Shopify prints it: seconds precision, in the shop's offset."""
    return moment.astimezone(SHOP_OFFSET).isoformat(timespec="seconds")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A UTC datetime, for readable test expectations."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def line_item(
    line_item_id: int,
    quantity: int,
    *,
    current_quantity: int | None = None,
    sku: str | None = None,
    price: str = "25.00",
) -> dict[str, Any]:
    """A line item; `current_quantity` defaults to `quantity` (nothing removed)."""
    return {
        "id": line_item_id,
        "variant_id": line_item_id + 100_000,
        "product_id": line_item_id + 200_000,
        "sku": sku or f"SKU-{line_item_id}",
        "title": f"Product {line_item_id}",
        "name": f"Product {line_item_id} - Default",
        "price": price,
        "quantity": quantity,
        "current_quantity": quantity if current_quantity is None else current_quantity,
        "fulfillable_quantity": quantity if current_quantity is None else current_quantity,
        "fulfillment_status": None,
    }


def refund(
    refund_id: int, created_at: datetime | str, lines: list[tuple[int, int, str]], *, order_id: int = 0
) -> dict[str, Any]:
    """A refund with (line_item_id, quantity, restock_type) refund lines."""
    created = created_at if isinstance(created_at, str) else shop_time(created_at)
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": created,
        "processed_at": created,
        "note": None,
        "restock": any(restock_type != "no_restock" for _, _, restock_type in lines),
        "refund_line_items": [
            {
                "id": refund_id * 10 + index,
                "line_item_id": line_item_id,
                "quantity": quantity,
                "restock_type": restock_type,
                "location_id": 6001,
                "subtotal": 25.0 * quantity,
                "total_tax": 0.0,
            }
            for index, (line_item_id, quantity, restock_type) in enumerate(lines)
        ],
        "transactions": [{"id": refund_id + 5000, "kind": "refund", "status": "success", "amount": "25.00"}],
        "order_adjustments": [],
    }


def order(
    order_id: int,
    updated_at: datetime,
    *,
    created_at: datetime | None = None,
    line_items: list[dict[str, Any]] | None = None,
    refunds: list[dict[str, Any]] | None = None,
    cancelled_at: datetime | None = None,
    cancel_reason: str | None = None,
    closed_at: datetime | None = None,
    financial_status: str = "paid",
    fulfillment_status: str | None = None,
    source_name: str = "web",
    test: bool = False,
    total_price: str = "50.00",
) -> dict[str, Any]:
    """An order as `GET orders.json` returns it; one two-unit line item unless `line_items` is given."""
    created = created_at or updated_at - timedelta(hours=2)
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{order_id % 100_000}",
        "order_number": order_id % 100_000,
        "email": "customer@example.com",
        "phone": None,
        "test": test,
        "tags": "",
        "source_name": source_name,
        "confirmed": True,
        "currency": "USD",
        "total_price": total_price,
        "current_total_price": total_price,
        "financial_status": financial_status,
        "fulfillment_status": fulfillment_status,
        "created_at": shop_time(created),
        "processed_at": shop_time(created),
        "updated_at": shop_time(updated_at),
        "cancelled_at": shop_time(cancelled_at) if cancelled_at else None,
        "cancel_reason": cancel_reason or ("customer" if cancelled_at else None),
        "closed_at": shop_time(closed_at) if closed_at else None,
        "customer": {"id": 7001, "email": "customer@example.com", "first_name": "Ana", "last_name": "Ruiz"},
        "line_items": [line_item(order_id * 10 + 1, 2)] if line_items is None else line_items,
        "refunds": refunds or [],
    }


def land_page(
    con: duckdb.DuckDBPyConnection,
    orders: list[Any],
    *,
    asset: str = "raw_updated_order_pages",
    partition_key: str = "2025-03-03",
    page_number: int = 1,
    fetched_at: datetime | None = None,
) -> int:
    """Land one page of the demo store as raw, superseding any current page with the same key (as a re-read
    window does).

    Returns the page's `page_seq`.
    """
    page = OrderPage(
        page_number=page_number,
        request_path="/admin/api/2025-01/orders.json?status=any&limit=250",
        api_version="2025-01",
        fetched_at=fetched_at or utc(2025, 3, 3, 12),
        body=json.dumps({"orders": orders}).encode(),
        order_count=len(orders),
    )
    return land_raw_page(con, page, asset=asset, partition_key=partition_key, store="demo")


def open_test_warehouse(path: str) -> duckdb.DuckDBPyConnection:
    """A real DuckDB file with the warehouse schema, for one test."""
    con = duckdb.connect(path)
    ensure_schema(con)
    return con


def table_rows(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[dict[str, Any]]:
    """The rows of a query as dicts keyed by column name."""
    cursor = con.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
