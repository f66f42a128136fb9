"""The store's orders as GraphQL Admin API objects, and Relay connections over sorted lists.

An order is mapped from the REST order the store already renders, so REST and GraphQL describe the same
orders: GIDs for ids, uppercase enums, UTC times with Z, money as decimal strings.

Malformed records (malformed.py) and GraphQL: the schema's types forbid most of REST's garbage (a string id,
a missing createdAt, a line item quantity "two", an amount "N/A"), so those orders are served clean. The
nullable timestamps that REST breaks (`cancelledAt`, `closedAt`, a refund's `createdAt`) come back null.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from graphql import GraphQLError

from .orders import Match, OrderBook

MAX_PAGE = 250
FULFILLMENT_STATUS = {
    None: "UNFULFILLED",
    "partial": "PARTIALLY_FULFILLED",
    "fulfilled": "FULFILLED",
    "restocked": "RESTOCKED",
}
NULLED_BY_MALFORMATION = {
    "cancelled_at_unparseable": "cancelledAt",
    "closed_at_unparseable": "closedAt",
}


def gid(kind: str, number: int) -> str:
    """A global id, e.g. gid://shopify/Order/123."""
    return f"gid://shopify/{kind}/{number}"


def parse_gid(value: str, kind: str | None = None) -> tuple[str, int]:
    """(kind, number) of a GID; a malformed one is an error naming it, as Shopify's "Invalid global id"."""
    prefix = "gid://shopify/"
    try:
        if not value.startswith(prefix):
            raise ValueError
        found, number = value[len(prefix) :].split("/", 1)
        parsed = int(number.split("?", 1)[0])
    except ValueError:
        raise GraphQLError(
            f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"}
        ) from None
    if kind is not None and found != kind:
        raise GraphQLError(f"Invalid global id '{value}': expected a {kind} id")
    return found, parsed


@lru_cache(maxsize=65536)
def utc(rest_time: str | None) -> str | None:
    """A REST shop-offset timestamp as GraphQL's UTC DateTime (whole seconds, Z)."""
    if rest_time is None:
        return None
    return datetime.fromisoformat(rest_time).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money_bag(rest_set: dict[str, Any]) -> dict[str, Any]:
    """A REST *_set as a MoneyBag."""
    return {
        "shopMoney": _money(rest_set["shop_money"]),
        "presentmentMoney": _money(rest_set["presentment_money"]),
    }


def _money(rest_money: dict[str, Any]) -> dict[str, Any]:
    return {"amount": rest_money["amount"], "currencyCode": rest_money["currency_code"]}


def graphql_order(book: OrderBook, match: Match) -> dict[str, Any]:
    """The GraphQL Order for a (plan, state): fields as values, nested connections as resolvers."""
    plan, state = match
    rest = book.render((plan._replace(malformed=None), state))
    currency = rest["currency"]
    line_items = [_line_item(line, currency) for line in rest["line_items"]]
    by_line_id = {int(item["legacyResourceId"]): item for item in line_items}
    refunds = [_refund(refund, by_line_id, currency) for refund in rest["refunds"]]
    order: dict[str, Any] = {
        "__typename": "Order",
        "id": rest["admin_graphql_api_id"],
        "legacyResourceId": str(rest["id"]),
        "name": rest["name"],
        "email": rest["email"],
        "createdAt": utc(rest["created_at"]),
        "processedAt": utc(rest["processed_at"]),
        "updatedAt": utc(rest["updated_at"]),
        "cancelledAt": utc(rest["cancelled_at"]),
        "closedAt": utc(rest["closed_at"]),
        "closed": rest["closed_at"] is not None,
        "cancelReason": rest["cancel_reason"].upper() if rest["cancel_reason"] else None,
        "displayFinancialStatus": rest["financial_status"].upper() if rest["financial_status"] else None,
        "displayFulfillmentStatus": FULFILLMENT_STATUS[rest["fulfillment_status"]],
        "sourceName": rest["source_name"],
        "test": rest["test"],
        "currencyCode": currency,
        "tags": [tag for tag in rest["tags"].split(", ") if tag],
        "totalPriceSet": money_bag(rest["total_price_set"]),
        "subtotalPriceSet": _bag(rest["subtotal_price"], currency),
        "currentTotalPriceSet": _bag(rest["current_total_price"], currency),
        "currentSubtotalPriceSet": _bag(rest["current_subtotal_price"], currency),
        "totalTaxSet": _bag(rest["total_tax"], currency),
        "currentTotalTaxSet": _bag(rest["current_total_tax"], currency),
        "note": rest["note"],
        "lineItems": lambda info, **args: connection(
            line_items, lambda item: (int(item["legacyResourceId"]),), args, bulk=_bulk(info)
        ),
        "refunds": lambda info, first=None: refunds if first is None else refunds[: max(first, 0)],
    }
    nulled = NULLED_BY_MALFORMATION.get(plan.malformed or "")
    if nulled:
        order[nulled] = None
    if plan.malformed == "refund_created_at_unparseable":
        for refund in refunds:
            refund["createdAt"] = None
    return order


def _bulk(info: Any) -> bool:
    return bool(getattr(info.context, "bulk", False))


def _bag(amount: str, currency: str) -> dict[str, Any]:
    money = {"amount": amount, "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": money}


def _line_item(line: dict[str, Any], currency: str) -> dict[str, Any]:
    return {
        "__typename": "LineItem",
        "id": line["admin_graphql_api_id"],
        "legacyResourceId": str(line["id"]),
        "sku": line["sku"],
        "title": line["title"],
        "name": line["name"],
        "variantTitle": line["variant_title"],
        "quantity": line["quantity"],
        "currentQuantity": line["current_quantity"],
        "unfulfilledQuantity": line["fulfillable_quantity"],
        "variant": {"id": gid("ProductVariant", line["variant_id"])} if line["variant_id"] else None,
        "product": {"id": gid("Product", line["product_id"])} if line["product_id"] else None,
        "originalUnitPriceSet": money_bag(line["price_set"]),
    }


def _refund(refund: dict[str, Any], by_line_id: dict[int, dict[str, Any]], currency: str) -> dict[str, Any]:
    lines = [
        {
            "__typename": "RefundLineItem",
            "id": gid("RefundLineItem", line["id"]),
            "lineItem": by_line_id[line["line_item_id"]],
            "quantity": line["quantity"],
            "restockType": line["restock_type"].upper(),
            "restocked": line["restock_type"] != "no_restock",
            "subtotalSet": money_bag(line["subtotal_set"]),
            "totalTaxSet": money_bag(line["total_tax_set"]),
        }
        for line in refund["refund_line_items"]
    ]
    return {
        "__typename": "Refund",
        "id": refund["admin_graphql_api_id"],
        "legacyResourceId": str(refund["id"]),
        "createdAt": utc(refund["created_at"]),
        "note": refund["note"],
        "refundLineItems": lambda info, **args: connection(
            lines, lambda line: (int(line["id"].rsplit("/", 1)[1]),), args, bulk=_bulk(info)
        ),
    }


# -- connections ---------------------------------------------------------------------------------------


def encode_cursor(key: Sequence[Any]) -> str:
    """An opaque cursor: base64 JSON of the sort key, like Shopify's {"last_id", "last_value"}."""
    payload = {"last_id": key[-1], "last_value": key[0] if len(key) > 1 else key[-1]}
    return base64.b64encode(orjson.dumps(payload)).decode("ascii")


def decode_cursor(cursor: str) -> tuple[Any, ...]:
    """The sort key a cursor names; anything that is not one of ours is an error naming the cursor."""
    try:
        payload = orjson.loads(base64.b64decode(cursor, validate=True))
        last_id, last_value = payload["last_id"], payload["last_value"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise GraphQLError(f"Invalid cursor {cursor!r}", extensions={"code": "BAD_REQUEST"}) from None
    if last_value == last_id:
        return (last_id,)
    return (last_value, last_id)


def connection(
    items: Sequence[Any],
    key: Callable[[Any], tuple[Any, ...]],
    args: dict[str, Any],
    *,
    node: Callable[[Any], Any] | None = None,
    bulk: bool = False,
    keys: Sequence[tuple[Any, ...]] | None = None,
) -> dict[str, Any]:
    """A Relay connection over `items` sorted ascending by `key` (args: first/after/last/before/reverse).

    In a bulk query a connection needs no `first` and yields every item.
    """
    first, last = args.get("first"), args.get("last")
    after, before = args.get("after"), args.get("before")
    if first is None and last is None and not bulk:
        raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
    if first is not None and last is not None:
        raise GraphQLError(
            "providing both first and last is not supported", extensions={"code": "BAD_REQUEST"}
        )
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= size <= MAX_PAGE:
            raise GraphQLError(
                f"{name}: the number of items per page must be between 0 and {MAX_PAGE}, got {size}",
                extensions={"code": "BAD_REQUEST"},
            )
    if keys is None:
        keys = [key(item) for item in items]
    reverse = bool(args.get("reverse"))
    # Positions are in the presented order (ascending, or descending with reverse).
    count = len(items)

    def position_after(cursor: tuple[Any, ...]) -> int:
        if reverse:
            return count - bisect_left(keys, cursor)
        return bisect_right(keys, cursor)

    def position_before(cursor: tuple[Any, ...]) -> int:
        if reverse:
            return count - bisect_right(keys, cursor)
        return bisect_left(keys, cursor)

    def checked(cursor: str) -> tuple[Any, ...]:
        decoded = decode_cursor(cursor)
        if keys and len(decoded) != len(keys[0]):
            # A cursor minted under another sortKey names a different kind of position.
            raise GraphQLError(
                f"Invalid cursor {cursor!r} for this sortKey", extensions={"code": "BAD_REQUEST"}
            )
        return decoded

    start = position_after(checked(after)) if after else 0
    stop = position_before(checked(before)) if before else count
    stop = max(stop, start)
    window_start, window_stop = start, stop
    if first is not None:
        window_stop = min(stop, start + first)
    elif last is not None:
        window_start = max(start, stop - last)
    indexes = range(window_start, window_stop)
    chosen = [items[count - 1 - i] if reverse else items[i] for i in indexes]
    chosen_keys = [keys[count - 1 - i] if reverse else keys[i] for i in indexes]
    nodes = [node(item) for item in chosen] if node else list(chosen)
    cursors = [encode_cursor(k) for k in chosen_keys]
    return {
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": window_stop < count,
            "hasPreviousPage": window_start > 0,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }
