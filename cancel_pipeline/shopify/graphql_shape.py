"""A landed GraphQL page's orders in REST's spelling, for callers that look at a few pages in Python.

The warehouse types pages with set-based SQL (`warehouse.graphql_orders`); this is the same mapping for the
CLI's summary of a fetch: nested lists completed from the page's follow-up answers, global ids to numbers,
enum values to REST's lowercase strings.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_GID = re.compile(r"gid://shopify/\w+/(\d+)")
_FULFILLMENT = {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial", "RESTOCKED": "restocked"}


def legacy_id(value: Any) -> Any:
    """The number of a global id (`gid://shopify/Order/123` -> 123); any other value as it is."""
    match = _GID.fullmatch(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _nodes(connection: Any) -> list:
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    return nodes if isinstance(nodes, list) else []


def rest_orders(body: bytes, operation: str = "orders") -> list[Any]:
    """The orders of a GraphQL page (`{"response": ..., "completions": [...]}`, or a bulk page's JSONL when
    `operation` is `bulk`) as REST order dicts."""
    if operation == "bulk":
        return _bulk_rest_orders(body)
    page = orjson.loads(body)
    data = page["response"]["data"]
    nodes = data["orders"]["nodes"] if isinstance(data.get("orders"), dict) else data["nodes"]
    more_lines: dict[str, list] = {}
    all_refunds: dict[str, list] = {}
    more_refund_lines: dict[str, list] = {}
    for answer in page.get("completions") or []:
        node = (answer.get("data") or {}).get("node") or {}
        key = node.get("id")
        if "lineItems" in node:
            more_lines.setdefault(key, []).extend(_nodes(node["lineItems"]))
        if isinstance(node.get("refunds"), list):
            all_refunds[key] = node["refunds"]
        if "refundLineItems" in node:
            more_refund_lines.setdefault(key, []).extend(_nodes(node["refundLineItems"]))
    return [_rest_order(n, more_lines, all_refunds, more_refund_lines) for n in nodes if n is not None]


def _rest_order(node: Any, more_lines: dict, all_refunds: dict, more_refund_lines: dict) -> Any:
    if not isinstance(node, dict):
        return node
    key = node.get("id")
    lines = _nodes(node.get("lineItems")) + more_lines.get(key, [])
    refunds = all_refunds.get(key, node.get("refunds") or [])
    money = (node.get("totalPriceSet") or {}).get("shopMoney") or {}
    return {
        "id": legacy_id(key),
        "name": node.get("name"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "cancel_reason": _lower(node.get("cancelReason")),
        "closed_at": node.get("closedAt"),
        "financial_status": _lower(node.get("displayFinancialStatus")),
        "fulfillment_status": _FULFILLMENT.get(node.get("displayFulfillmentStatus")),
        "source_name": node.get("sourceName"),
        "test": node.get("test"),
        "currency": node.get("currencyCode"),
        "total_price": money.get("amount"),
        "tags": ", ".join(node.get("tags") or []),
        "line_items": [
            {
                "id": legacy_id(line.get("id")),
                "variant_id": legacy_id((line.get("variant") or {}).get("id")),
                "product_id": legacy_id((line.get("product") or {}).get("id")),
                "sku": line.get("sku"),
                "title": line.get("title"),
                "quantity": line.get("quantity"),
                "current_quantity": line.get("currentQuantity"),
            }
            for line in lines
            if isinstance(line, dict)
        ],
        "refunds": [
            {
                "id": legacy_id(refund.get("id")),
                "created_at": refund.get("createdAt"),
                "refund_line_items": [
                    {
                        "line_item_id": legacy_id((rli.get("lineItem") or {}).get("id")),
                        "quantity": rli.get("quantity"),
                        "restock_type": _lower(rli.get("restockType")),
                    }
                    for rli in _nodes(refund.get("refundLineItems"))
                    + more_refund_lines.get(refund.get("id"), [])
                    if isinstance(rli, dict)
                ],
            }
            for refund in refunds
            if isinstance(refund, dict)
        ],
    }


def _bulk_rest_orders(body: bytes) -> list[Any]:
    """A bulk page: order lines, each followed by its children (`__parentId`: line items under the order,
    refund lines under their refund)."""
    roots: list[dict] = []
    children: dict[str, list[dict]] = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        item = orjson.loads(line)
        parent = item.pop("__parentId", None) if isinstance(item, dict) else None
        if parent is None:
            roots.append(item)
        else:
            children.setdefault(parent, []).append(item)
    orders = []
    for root in roots:
        own = children.get(root.get("id"), []) if isinstance(root, dict) else []
        lines = [c for c in own if "lineItem" not in c and "restockType" not in c]
        node = dict(root) if isinstance(root, dict) else root
        if isinstance(node, dict):
            inline = node.get("lineItems")
            node["lineItems"] = (
                None if "lineItems" in node and inline is None else {"nodes": _edges_or_nodes(inline) + lines}
            )
            node["refunds"] = [
                {
                    **r,
                    "refundLineItems": {
                        "nodes": _edges_or_nodes(r.get("refundLineItems")) + children.get(r.get("id"), [])
                    },
                }
                for r in node.get("refunds") or []
                if isinstance(r, dict)
            ]
        orders.append(_rest_order(node, {}, {}, {}))
    return orders


def _edges_or_nodes(connection: Any) -> list:
    edges = connection.get("edges") if isinstance(connection, dict) else None
    if isinstance(edges, list):
        return [e.get("node") for e in edges if isinstance(e, dict)]
    return _nodes(connection)
