"""The GraphQL documents the client sends, the search strings it builds, and their estimated cost.

One fragment selects every order field the tables need (the fact sheet's table of REST fields and their
GraphQL names). Nested connections ask for a first page only (`lineItems`, `refunds`, `refundLineItems`):
asking for 250 of each would make one order cost more than the single-query limit. An order with more is
completed by the follow-up queries below, never cut short.
"""

from __future__ import annotations

from datetime import datetime

from cancel_pipeline.shopify.client import format_instant

#: Shopify's page size ceiling for a connection.
MAX_CONNECTION_PAGE = 250

#: First page of each nested list in the orders query; more is fetched by a completion query. Small, because
#: the requested cost multiplies through nesting: at these sizes an order costs about 60 points, so a page
#: holds about 16 orders under the 1,000-point limit (10/5/10 cost about 150, 6 orders a page).
NESTED_LINE_ITEMS = 5
NESTED_REFUNDS = 3
NESTED_REFUND_LINE_ITEMS = 5

_LINE_ITEM_FIELDS = "id sku title quantity currentQuantity variant { id } product { id }"
_REFUND_LINE_FIELDS = "lineItem { id } quantity restockType"

ORDER_FIELDS = f"""
fragment OrderFields on Order {{
  id name createdAt updatedAt cancelledAt cancelReason closedAt
  displayFinancialStatus displayFulfillmentStatus sourceName test currencyCode tags
  totalPriceSet {{ shopMoney {{ amount currencyCode }} }}
  lineItems(first: {NESTED_LINE_ITEMS}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {_LINE_ITEM_FIELDS} }} }}
  refunds(first: {NESTED_REFUNDS}) {{
    id createdAt
    refundLineItems(first: {NESTED_REFUND_LINE_ITEMS}) {{
      pageInfo {{ hasNextPage endCursor }} nodes {{ {_REFUND_LINE_FIELDS} }}
    }}
  }}
}}
"""

ORDERS_QUERY = (
    """
query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes { ...OrderFields }
  }
}
"""
    + ORDER_FIELDS
)

NODES_QUERY = (
    """
query OrdersByIds($ids: [ID!]!) {
  nodes(ids: $ids) { ...OrderFields }
}
"""
    + ORDER_FIELDS
)

ORDERS_COUNT_QUERY = """
query OrdersCount($query: String) {
  ordersCount(query: $query) { count }
}
"""

ORDER_LINE_ITEMS_QUERY = f"""
query OrderLineItems($id: ID!, $first: Int!, $after: String) {{
  node(id: $id) {{
    ... on Order {{
      id
      lineItems(first: $first, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {_LINE_ITEM_FIELDS} }} }}
    }}
  }}
}}
"""

ORDER_REFUNDS_QUERY = f"""
query OrderRefunds($id: ID!) {{
  node(id: $id) {{
    ... on Order {{
      id
      refunds {{
        id createdAt
        refundLineItems(first: {NESTED_REFUND_LINE_ITEMS}) {{
          pageInfo {{ hasNextPage endCursor }} nodes {{ {_REFUND_LINE_FIELDS} }}
        }}
      }}
    }}
  }}
}}
"""

REFUND_LINE_ITEMS_QUERY = f"""
query RefundLineItems($id: ID!, $first: Int!, $after: String) {{
  node(id: $id) {{
    ... on Refund {{
      id
      refundLineItems(first: $first, after: $after) {{
        pageInfo {{ hasNextPage endCursor }} nodes {{ {_REFUND_LINE_FIELDS} }}
      }}
    }}
  }}
}}
"""

# Cost of one node per Shopify's rules (object 1, scalar/enum 0; a connection 2 + first x node), used before
# the server has answered; afterwards the client sizes pages from the server's `requestedQueryCost`.
_LINE_ITEM_COST = 3  # the line item, its variant, its product
_REFUND_LINE_COST = 2  # the refund line, its line item
_REFUND_COST = 1 + 2 + NESTED_REFUND_LINE_ITEMS * _REFUND_LINE_COST
ORDER_COST = 1 + 2 + (2 + NESTED_LINE_ITEMS * _LINE_ITEM_COST) + NESTED_REFUNDS * _REFUND_COST
"""Estimated requested cost of one order in `OrderFields` (the order, its money bag, nested first pages)."""
LINE_ITEM_COST = _LINE_ITEM_COST
REFUND_LINE_COST = _REFUND_LINE_COST


def gid(kind: str, legacy_id: int) -> str:
    """The GraphQL global id of a REST id, e.g. `gid://shopify/Order/123`."""
    return f"gid://shopify/{kind}/{int(legacy_id)}"


def orders_search(
    *, status: str, updated_at_min: datetime | None, updated_at_max: datetime | None
) -> str | None:
    """The `query` argument for an orders filter, in Shopify's search syntax; None for no filter.

    Bounds are quoted whole-second UTC instants, both inclusive (`>=`, `<=`) as REST's `updated_at_min` /
    `updated_at_max` are. `status=any` adds no term: without a status term the connection returns every
    order, where REST's default is `open`.
    """
    terms = []
    if status != "any":
        if status not in ("open", "closed", "cancelled"):
            raise ValueError(f"order status must be any, open, closed or cancelled, got {status!r}")
        terms.append(f"status:{status}")
    if updated_at_min is not None:
        terms.append(f"updated_at:>='{format_instant(updated_at_min)}'")
    if updated_at_max is not None:
        terms.append(f"updated_at:<='{format_instant(updated_at_max)}'")
    return " AND ".join(terms) or None
