"""GraphQL Admin API shapes of REST test orders (per the fact sheet's field table), and pages of them.

`graphql_node` spells a REST order (`order_builders.order`) as the `OrderFields` fragment returns it;
`graphql_page` lays nodes out as the GraphQL client lands a page, cutting nested lists at the client's first
page sizes and putting the rest in completion answers, as the client's follow-up queries would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cancel_pipeline.shopify.graphql_queries import (
    NESTED_LINE_ITEMS,
    NESTED_REFUND_LINE_ITEMS,
    NESTED_REFUNDS,
)

_FULFILLMENT = {None: "UNFULFILLED", "partial": "PARTIALLY_FULFILLED", "fulfilled": "FULFILLED"}


def _utc(text: str | None) -> str | None:
    try:
        moment = datetime.fromisoformat(text) if text is not None else None
    except ValueError:
        return text  # a malformed time stays as it is, for reject tests
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gid(kind: str, value: Any) -> Any:
    return (
        f"gid://shopify/{kind}/{value}" if isinstance(value, int) and not isinstance(value, bool) else value
    )


def _upper(value: str | None) -> str | None:
    return value.upper() if isinstance(value, str) else value


def graphql_line_item(line: dict[str, Any]) -> dict[str, Any]:
    """A REST line item as a `LineItem` node."""
    return {
        "id": _gid("LineItem", line.get("id")),
        "sku": line.get("sku"),
        "title": line.get("title"),
        "quantity": line.get("quantity"),
        "currentQuantity": line.get("current_quantity"),
        "variant": {"id": _gid("ProductVariant", line["variant_id"])} if line.get("variant_id") else None,
        "product": {"id": _gid("Product", line["product_id"])} if line.get("product_id") else None,
    }


def graphql_refund_line(line: dict[str, Any]) -> dict[str, Any]:
    """A REST refund line as a `RefundLineItem` node."""
    return {
        "lineItem": {"id": _gid("LineItem", line["line_item_id"])},
        "quantity": line["quantity"],
        "restockType": _upper(line["restock_type"]),
    }


def graphql_node(order: dict[str, Any]) -> dict[str, Any]:
    """A REST order as the client's `OrderFields` selection returns it, nested lists whole."""
    tags = order.get("tags") or ""
    lines = order.get("line_items") or []
    return {
        "id": _gid("Order", order["id"]),
        "name": order.get("name"),
        "createdAt": _utc(order.get("created_at")),
        "updatedAt": _utc(order.get("updated_at")),
        "cancelledAt": _utc(order.get("cancelled_at")),
        "cancelReason": _upper(order.get("cancel_reason")),
        "closedAt": _utc(order.get("closed_at")),
        "displayFinancialStatus": _upper(order.get("financial_status")),
        "displayFulfillmentStatus": _FULFILLMENT.get(order.get("fulfillment_status"), "UNFULFILLED"),
        "sourceName": order.get("source_name"),
        "test": order.get("test", False),
        "currencyCode": order.get("currency"),
        "tags": [tag.strip() for tag in tags.split(",") if tag.strip()],
        "totalPriceSet": {
            "shopMoney": {"amount": order.get("total_price"), "currencyCode": order.get("currency")}
        },
        # GraphQL cannot send a non-list; the closest malformation is a missing connection.
        "lineItems": {"nodes": [graphql_line_item(line) for line in lines]}
        if isinstance(lines, list)
        else None,
        "refunds": [
            {
                "id": _gid("Refund", refund["id"]),
                "createdAt": _utc(refund.get("created_at")),
                "refundLineItems": {
                    "nodes": [graphql_refund_line(x) for x in refund.get("refund_line_items", [])]
                },
            }
            for refund in order.get("refunds") or []
        ],
    }


def _cut(nodes: list, first: int) -> dict[str, Any]:
    return {
        "pageInfo": {"hasNextPage": len(nodes) > first, "endCursor": str(first) if nodes else None},
        "nodes": nodes[:first],
    }


def cut_node(node: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The node as the orders query returns it (nested lists cut at the client's first pages) and the
    completion answers the client's follow-up queries would get, in the order it asks them."""
    completions: list[dict[str, Any]] = []
    lines = node["lineItems"]["nodes"] if node["lineItems"] else []
    refunds = node["refunds"]

    def cut_refund(refund: dict[str, Any]) -> dict[str, Any]:
        return {
            **refund,
            "refundLineItems": _cut(refund["refundLineItems"]["nodes"], NESTED_REFUND_LINE_ITEMS),
        }

    shown = {
        **node,
        "lineItems": _cut(lines, NESTED_LINE_ITEMS) if node["lineItems"] else None,
        "refunds": [cut_refund(r) for r in refunds][:NESTED_REFUNDS],
    }
    for start in range(NESTED_LINE_ITEMS, len(lines), 250):  # one follow-up answer per 250 further lines
        completions.append({"data": {"node": {"id": node["id"], "lineItems": _cut(lines[start:], 250)}}})
    listed = shown["refunds"]
    if len(refunds) >= NESTED_REFUNDS:
        listed = [cut_refund(r) for r in refunds]
        completions.append({"data": {"node": {"id": node["id"], "refunds": listed}}})
    for refund in refunds:
        rest = refund["refundLineItems"]["nodes"][NESTED_REFUND_LINE_ITEMS:]
        if rest:
            completions.append({"data": {"node": {"id": refund["id"], "refundLineItems": _cut(rest, 250)}}})
    return shown, completions


def graphql_page(orders: list[dict[str, Any]], *, operation: str = "orders") -> bytes:
    """REST orders as one landed GraphQL page: the answer (nested lists cut) and its completions."""
    shown, completions = [], []
    for order in orders:
        node, more = cut_node(graphql_node(order))
        shown.append(node)
        completions += more
    data = {"orders": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": shown}}
    if operation == "nodes":
        data = {"nodes": shown}
    response = {"data": data, "extensions": {"cost": {"requestedQueryCost": 100, "actualQueryCost": 50}}}
    return json.dumps({"response": response, "completions": completions}).encode()


def bulk_lines(orders: list[dict[str, Any]], *, inline_refund_lines: bool = False) -> list[bytes]:
    """REST orders as a bulk operation's JSONL lines (groupObjects): each order's line, then its line items
    and refund lines as children with `__parentId`; refund lines kept inline in the order's line instead
    when `inline_refund_lines`."""
    lines: list[bytes] = []
    for order in orders:
        node = graphql_node(order)
        root = {key: value for key, value in node.items() if key not in ("lineItems", "refunds")}
        if node["lineItems"] is None:
            root["lineItems"] = None  # the malformed order: its connection came back null
        root["refunds"] = [
            {
                "id": r["id"],
                "createdAt": r["createdAt"],
                **(
                    {"refundLineItems": {"edges": [{"node": x} for x in r["refundLineItems"]["nodes"]]}}
                    if inline_refund_lines
                    else {}
                ),
            }
            for r in node["refunds"]
        ]
        lines.append(json.dumps(root).encode() + b"\n")
        for item in node["lineItems"]["nodes"] if node["lineItems"] else []:
            lines.append(json.dumps({**item, "__parentId": node["id"]}).encode() + b"\n")
        if not inline_refund_lines:
            for r in node["refunds"]:
                for x in r["refundLineItems"]["nodes"]:
                    lines.append(json.dumps({**x, "__parentId": r["id"]}).encode() + b"\n")
    return lines
