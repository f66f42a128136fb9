"""SQL that reads GraphQL order pages into the same typed rows as REST pages (`typed_orders`).

A GraphQL page is landed as `{"response": <answer>, "completions": [<answers>]}` (see the Shopify GraphQL
client): the answer of `orders` (`data.orders.nodes`) or `nodes(ids:)` (`data.nodes`), and the follow-up
answers that complete nested lists the answer cut short (`data.node` with `lineItems`, `refunds` or
`refundLineItems`). This SQL joins the completions back to their order or refund by id, then spells each
order the way REST does, as text or JSON, so `typed_orders`' checks and casts apply unchanged:

- global ids (`gid://shopify/Order/123`) become the number; an id of another shape stays a string, which
  the checks reject as `id_not_integer` (or `line_items_invalid` for a line item);
- enum values become REST's strings: `cancel_reason`, `financial_status`, `restock_type` lowercase, and
  `displayFulfillmentStatus` REST's null / `partial` / `fulfilled` / `restocked`;
- money is `totalPriceSet.shopMoney.amount` (a decimal string), tags a `, `-joined string as REST's.

A null node (an id `nodes(ids:)` did not find) is no order and yields no row.
"""

from __future__ import annotations

import json

from cancel_pipeline.warehouse.typed_orders import _TYPED_TAIL

_LINE_ITEM = {
    "id": "VARCHAR",
    "sku": "VARCHAR",
    "title": "VARCHAR",
    "quantity": "JSON",
    "currentQuantity": "BIGINT",
    "variant": {"id": "VARCHAR"},
    "product": {"id": "VARCHAR"},
}
_REFUND_LINE = {"lineItem": {"id": "VARCHAR"}, "quantity": "BIGINT", "restockType": "VARCHAR"}
_REFUND = {"id": "VARCHAR", "createdAt": "VARCHAR", "refundLineItems": {"nodes": [_REFUND_LINE]}}
ORDER_NODE = {
    "id": "VARCHAR",
    "name": "VARCHAR",
    "createdAt": "VARCHAR",
    "updatedAt": "VARCHAR",
    "cancelledAt": "VARCHAR",
    "cancelReason": "VARCHAR",
    "closedAt": "VARCHAR",
    "displayFinancialStatus": "VARCHAR",
    "displayFulfillmentStatus": "VARCHAR",
    "sourceName": "VARCHAR",
    "test": "VARCHAR",
    "tags": ["VARCHAR"],
    "currencyCode": "VARCHAR",
    "totalPriceSet": {"shopMoney": {"amount": "VARCHAR"}},
    "lineItems": {"nodes": [_LINE_ITEM]},
    "refunds": [_REFUND],
}
"""What the parse keeps of a GraphQL order node (the fields the client's `OrderFields` fragment selects)."""

_COMPLETION_NODE = {
    "id": "VARCHAR",
    "lineItems": {"nodes": [_LINE_ITEM]},
    "refunds": [_REFUND],
    "refundLineItems": {"nodes": [_REFUND_LINE]},
}
GRAPHQL_PAGE_STRUCTURE = json.dumps(
    {
        "response": {"data": {"orders": {"nodes": [ORDER_NODE]}, "nodes": [ORDER_NODE]}},
        "completions": [{"data": {"node": _COMPLETION_NODE}}],
    }
)


def gid_json(expr: str, kind: str) -> str:
    """SQL: the number of a `gid://shopify/<kind>/<n>` as JSON, else the value as a JSON string."""
    return (
        f"case when regexp_full_match({expr}, 'gid://shopify/{kind}/[0-9]+') "
        f"then regexp_extract({expr}, '[0-9]+$')::json else to_json({expr}) end"
    )


def gid_bigint(expr: str, kind: str) -> str:
    """SQL: the number of a `gid://shopify/<kind>/<n>` as BIGINT, else null."""
    return f"try_cast(regexp_extract({expr}, '^gid://shopify/{kind}/([0-9]+)$', 1) as bigint)"


_FULFILLMENT_STATUS = """case o.displayFulfillmentStatus
            when 'FULFILLED' then 'fulfilled'
            when 'PARTIALLY_FULFILLED' then 'partial'
            when 'RESTOCKED' then 'restocked'
        end"""

# `f` from `gql_final` (page_seq, position, o: the order node, lines: its line items, refunds: its refunds
# with their lines), spelling each order as REST does.
_F_FROM_FINAL = f"""f as (
    select
        g.page_seq, g.position,
        {gid_json("o.id", "Order")} as id,
        o."name" as "name",
        o.createdAt as created_at,
        o.updatedAt as updated_at,
        o.cancelledAt as cancelled_at,
        lower(o.cancelReason) as cancel_reason,
        o.closedAt as closed_at,
        lower(o.displayFinancialStatus) as financial_status,
        {_FULFILLMENT_STATUS} as fulfillment_status,
        o.sourceName as source_name,
        o.currencyCode as currency,
        o.totalPriceSet.shopMoney.amount as total_price,
        o.test as test,
        array_to_string(o.tags, ', ') as tags,
        -- Refund lines that name no refund cannot be put in one: a string where REST has a list, which the
        -- checks reject as refunds_invalid rather than drop the lines unseen.
        case when g.stray_refund_lines then to_json('refund lines listed under the order, not a refund')
        else to_json(list_transform(g.refunds, lambda r: struct_pack(
            id := {gid_bigint("r.id", "Refund")},
            created_at := r.createdAt,
            refund_line_items := list_transform(r.refundLineItems.nodes, lambda l: struct_pack(
                line_item_id := {gid_bigint("l.lineItem.id", "LineItem")},
                quantity := l.quantity,
                restock_type := lower(l.restockType)
            ))
        ))) end as refunds,
        list_transform(g.lines, lambda e: struct_pack(
            id := {gid_json("e.id", "LineItem")},
            variant_id := {gid_bigint("e.variant.id", "ProductVariant")},
            product_id := {gid_bigint("e.product.id", "Product")},
            sku := e.sku,
            title := e.title,
            quantity := e.quantity,
            current_quantity := e.currentQuantity
        )) as line_items
    from gql_final g
)"""

# An `f` for GraphQL pages: the same columns as the REST source of `typed_orders`.
_GRAPHQL_SOURCE = f"""
docs as (
    select page.page_seq, json_transform(file.content, '{GRAPHQL_PAGE_STRUCTURE}') as d
    from read_text($files) as file
    join (select unnest($files) as filename, unnest($seqs) as page_seq) as page using (filename)
),
gql_nodes as (
    select page_seq, unnest(nodes) as o, generate_subscripts(nodes, 1)::integer as position
    from (select page_seq, coalesce(d.response.data.orders.nodes, d.response.data.nodes) as nodes from docs)
),
gql_completions as (
    select page_seq, c.data.node as node, idx
    from (select page_seq, unnest(d.completions) as c, generate_subscripts(d.completions, 1) as idx from docs)
    where c.data.node.id is not null
),
gql_extra as (
    -- Per page and node id: the further line items (in answer order), the whole refunds list when it was
    -- asked for again, the further refund lines.
    select
        page_seq, node.id as node_id,
        flatten(list(node.lineItems.nodes order by idx) filter (where node.lineItems.nodes is not null))
            as more_lines,
        last(node.refunds order by idx) filter (where node.refunds is not null) as all_refunds,
        flatten(list(node.refundLineItems.nodes order by idx)
            filter (where node.refundLineItems.nodes is not null)) as more_refund_lines
    from gql_completions
    group by all
),
gql_orders as (
    select
        n.page_seq, n.position, n.o,
        case when n.o.lineItems.nodes is not null
            then list_concat(n.o.lineItems.nodes, coalesce(e.more_lines, [])) end as lines,
        coalesce(e.all_refunds, n.o.refunds) as refunds
    from gql_nodes n
    left join gql_extra e on e.page_seq = n.page_seq and e.node_id = n.o.id
    where n.o is not null
),
gql_completed_refunds as (
    -- Only orders with a refund whose lines were completed are taken apart and put together again.
    select r.page_seq, r.position, list(struct_pack(
        id := r.refund.id, createdAt := r.refund.createdAt, refundLineItems := struct_pack(
            nodes := list_concat(r.refund.refundLineItems.nodes, coalesce(e.more_refund_lines, []))
        )
    ) order by r.ri) as refunds
    from (
        select page_seq, position, unnest(refunds) as refund, generate_subscripts(refunds, 1) as ri
        from gql_orders
        where page_seq in (select page_seq from gql_extra where len(more_refund_lines) > 0)
    ) r
    left join gql_extra e on e.page_seq = r.page_seq and e.node_id = r.refund.id
    group by r.page_seq, r.position
),
gql_final as (
    select
        g.page_seq, g.position, g.o, g.lines, coalesce(c.refunds, g.refunds) as refunds,
        false as stray_refund_lines
    from gql_orders g
    left join gql_completed_refunds c using (page_seq, position)
),
{_F_FROM_FINAL}"""


GRAPHQL_OBJECTS_SELECT = f"with {_GRAPHQL_SOURCE},{_TYPED_TAIL}"
"""One typed row per order node of a chunk of GraphQL pages; parameters as `TYPED_OBJECTS_SELECT`'s."""

INSERT_GRAPHQL_OBJECTS_SQL = "insert into raw_order_objects by name " + GRAPHQL_OBJECTS_SELECT
"""Appends the typed objects of a chunk of GraphQL pages to `raw_order_objects`."""

GRAPHQL_OBJECT_PATHS = ("$.response.data.orders.nodes", "$.response.data.nodes")
"""Where a GraphQL page keeps its order nodes (the first that exists), for quoting a reject verbatim."""


# --- Bulk operation results ------------------------------------------------------------------------------
#
# A bulk page is a chunk of the operation's JSONL holding whole orders: an order's line, then the lines of
# its children, each with `__parentId` (line items under the order, refund lines under their refund). A
# connection Shopify kept inline (`{"edges": [{"node": ...}]}` or `{"nodes": [...]}`) is read as well.

_INLINE_LINES = {"edges": [{"node": _LINE_ITEM}], "nodes": [_LINE_ITEM]}
_INLINE_REFUND_LINES = {"edges": [{"node": _REFUND_LINE}], "nodes": [_REFUND_LINE]}
_BULK_LINE = {
    **{key: value for key, value in ORDER_NODE.items() if key not in ("lineItems", "refunds")},
    "__parentId": "VARCHAR",
    "lineItems": _INLINE_LINES,
    "refunds": [{"id": "VARCHAR", "createdAt": "VARCHAR", "refundLineItems": _INLINE_REFUND_LINES}],
    # a line item's fields beyond the order's
    "sku": "VARCHAR",
    "title": "VARCHAR",
    "quantity": "JSON",
    "currentQuantity": "BIGINT",
    "variant": {"id": "VARCHAR"},
    "product": {"id": "VARCHAR"},
    # a refund line's
    "lineItem": {"id": "VARCHAR"},
    "restockType": "VARCHAR",
}
BULK_LINE_STRUCTURE = json.dumps(_BULK_LINE)

_BULK_LINES = """
bulk_lines as (
    select page_seq, line_no, line
    from (
        select page_seq, unnest(lines) as line, generate_subscripts(lines, 1) as line_no
        from (
            select page.page_seq, string_split(file.content, chr(10)) as lines
            from read_text($files) as file
            join (select unnest($files) as filename, unnest($seqs) as page_seq) as page using (filename)
        )
    )
    where trim(line) <> ''
)"""

_BULK_SOURCE = f"""{_BULK_LINES},
-- materialized: inlined, DuckDB parsed each line again in every filter and join below that reads it
bulk_parsed as materialized (
    select page_seq, line_no, line, json_transform(line, '{BULK_LINE_STRUCTURE}') as j from bulk_lines
),
bulk_roots as (
    select
        page_seq, j as o, row_number() over (partition by page_seq order by line_no)::integer as position,
        -- an order whose line items came back null cannot be typed (absent: they are child lines)
        coalesce(json_type(line, '$.lineItems') = 'NULL', false) as line_items_null
    from bulk_parsed
    where j."__parentId" is null
),
bulk_child_lines as (
    select page_seq, j."__parentId" as parent_id, list(struct_pack(
        id := j.id, sku := j.sku, title := j.title, quantity := j.quantity,
        currentQuantity := j.currentQuantity, variant := j.variant, product := j.product
    ) order by line_no) as lines
    from bulk_parsed
    where j."__parentId" is not null and j.lineItem is null and j.restockType is null
    group by all
),
bulk_child_refund_lines as (
    select page_seq, j."__parentId" as parent_id, list(struct_pack(
        lineItem := j.lineItem, quantity := try_cast(j.quantity::varchar as bigint), restockType := j.restockType
    ) order by line_no) as lines
    from bulk_parsed
    where j."__parentId" is not null and (j.lineItem is not null or j.restockType is not null)
    group by all
),
bulk_refunds as (
    select r.page_seq, r.position, list(struct_pack(
        id := r.refund.id, createdAt := r.refund.createdAt, refundLineItems := struct_pack(nodes := list_concat(
            coalesce(r.refund.refundLineItems.nodes, []),
            coalesce(list_transform(r.refund.refundLineItems.edges, lambda e: e.node), []),
            coalesce(c.lines, [])
        ))
    ) order by r.ri) as refunds
    from (
        select page_seq, position, unnest(o.refunds) as refund, generate_subscripts(o.refunds, 1) as ri
        from bulk_roots
    ) r
    left join bulk_child_refund_lines c on c.page_seq = r.page_seq and c.parent_id = r.refund.id
    group by r.page_seq, r.position
),
gql_final as (
    select
        b.page_seq, b.position, b.o,
        case when not b.line_items_null then list_concat(
            coalesce(b.o.lineItems.nodes, []),
            coalesce(list_transform(b.o.lineItems.edges, lambda e: e.node), []),
            coalesce(l.lines, [])
        ) end as lines,
        coalesce(r.refunds, []) as refunds,
        s.parent_id is not null as stray_refund_lines
    from bulk_roots b
    left join bulk_child_lines l on l.page_seq = b.page_seq and l.parent_id = b.o.id
    left join bulk_child_refund_lines s on s.page_seq = b.page_seq and s.parent_id = b.o.id
    left join bulk_refunds r on r.page_seq = b.page_seq and r.position = b.position
),
{_F_FROM_FINAL}"""

BULK_OBJECTS_SELECT = f"with {_BULK_SOURCE},{_TYPED_TAIL}"
"""One typed row per order of a chunk of bulk JSONL pages; parameters as `TYPED_OBJECTS_SELECT`'s."""

INSERT_BULK_OBJECTS_SQL = "insert into raw_order_objects by name " + BULK_OBJECTS_SELECT
"""Appends the typed objects of a chunk of bulk pages to `raw_order_objects`."""

COMPLETE_BULK_REJECTS_SQL = f"""
with {_BULK_LINES},
roots as (
    select page_seq, line, row_number() over (partition by page_seq order by line_no)::integer as position
    from bulk_lines
    where json_extract_string(line, '$.__parentId') is null
)
update raw_order_objects o
set raw_order = r.line::json,
    detail = case when o.reason = 'line_items_invalid' then o.detail || '(in the child lines)' else o.detail end
from roots r
where o.reason is not null and o.page_seq = r.page_seq and o.position = r.position
"""
"""Completes the rejects of some bulk pages with their order's line verbatim (parameters: files, seqs)."""
