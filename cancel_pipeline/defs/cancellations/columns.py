"""What each column of the derived tables means, as the data contract (docs/data-contract.md) states it.

Shown in the UI through `dagster/column_schema`. A column added to a table without a description here is
caught by a test, so the UI and the contract do not drift apart.
"""

from __future__ import annotations

# Columns that mean the same in every table that has them.
_SHARED = {
    "order_id": "Shopify order id.",
    "order_name": "The order's name as the shop shows it, e.g. #1001.",
    "created_at": "When the order was created (UTC).",
    "updated_at": "Shopify's updated_at of the order version the row comes from (UTC).",
    "cancelled_at": "When the whole order was canceled (UTC); null unless it was.",
    "cancel_reason": "Shopify's cancel reason (customer, fraud, inventory, declined, staff, other).",
    "closed_at": "When the order was closed (UTC); null while it is open.",
    "financial_status": "Shopify's financial_status (pending, paid, refunded, voided, ...).",
    "fulfillment_status": "Shopify's fulfillment_status (null, partial, fulfilled, ...).",
    "source_name": "Where the order was placed (web, pos, shopify_draft_order, an app's id, ...).",
    "currency": "The order's currency (ISO 4217).",
    "total_price": "The order's total price, DECIMAL(18,2), in its currency.",
    "test": "A test order (Shopify's test flag; missing means false).",
    "asset": "Which raw asset fetched the page: raw_canceled_order_pages, raw_updated_order_pages or refresh.",
    "partition_key": "The day (or range of days, first...last) the page was fetched for; the run id "
    "for refresh.",
    "page_number": "1-based number of the page within its fetch.",
    "page_seq": "The page's landing order in raw_order_pages.",
    "last_fetched_at": "The latest time this content was fetched (UTC).",
}

_PER_TABLE: dict[str, dict[str, str]] = {
    "order_versions": {
        "updated_at": "Shopify's updated_at of this version (UTC); with order_id, the key.",
        "line_items": "The version's line items, typed (id, quantity, current_quantity, sku, title, ...).",
        "refunds": "The version's refunds, typed, with their refund line items and restock_type.",
        "asset": "The raw asset whose page the content was last read from.",
        "partition_key": "The day of that page (first...last for a range run; the run id for refresh).",
        "page_number": "1-based number of that page within its fetch.",
        "page_seq": "That page's landing order in raw_order_pages.",
        "first_fetched_at": "The earliest time this version was fetched (UTC).",
        "last_fetched_at": "The latest time this version was fetched (UTC).",
        "superseded_at": "First fetch time of the version that replaced this one; null while it is current.",
        "superseded_by_updated_at": "updated_at of the version that replaced this one; null while current.",
    },
    "order_rejects": {
        "order_id": "Shopify order id of the rejected object; null when it has none that is an integer.",
        "reason": "Why the object was rejected: a stable code such as created_at_unparseable.",
        "detail": "The offending value, for a person to read.",
        "asset": "The raw asset whose page held the object.",
        "position": "1-based place of the object in its page's orders list; with page_seq, the key.",
        "fetched_at": "When the page was fetched (UTC).",
        "raw_order": "The rejected object, verbatim (JSON).",
        "request_path": "The request the page answered (path and query, no credentials).",
    },
    "canceled_orders": {
        "cancelled_at": "When the whole order was canceled (UTC).",
        "updated_at": "Shopify's updated_at of the latest seen version (UTC).",
    },
    "canceled_line_items": {
        "line_item_id": "Shopify line item id; with order_id, the key.",
        "sku": "The line's SKU.",
        "title": "The line's product title.",
        "variant_id": "Shopify variant id of the line.",
        "product_id": "Shopify product id of the line.",
        "quantity": "Units ordered on the line.",
        "canceled_quantity": "Units of the line canceled: all of them when the order was canceled, else units "
        "in refund lines with restock_type 'cancel' plus units removed by an order edit.",
        "canceled_at": "When the units were canceled (UTC): the order's cancelled_at, else the latest cancel "
        "refund of the line, else (edit only) updated_at of the first version that shows the removal.",
        "order_canceled": "True when the whole order was canceled; false for items canceled from an order that "
        "stays open.",
        "updated_at": "Shopify's updated_at of the order's latest seen version (UTC).",
    },
    "orders": {
        "updated_at": "Shopify's updated_at of the latest seen version (UTC).",
        "status": "Lifecycle: canceled (cancelled_at set), else completed (fulfilled or closed), else "
        "partially_fulfilled (fulfillment_status partial), else created.",
        "last_fetched_at": "The latest time the order's current version was fetched (UTC).",
    },
}


def column_description(table: str, column: str) -> str | None:
    """The contract's description of `table`.`column`, or None when it has none."""
    return _PER_TABLE.get(table, {}).get(column) or _SHARED.get(column)
