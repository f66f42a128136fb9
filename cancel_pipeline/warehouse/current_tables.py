"""SQL that recomputes the current-state tables for the orders a derivation batch touched.

Each query reads only `order_versions` rows of the orders in the temp table `touched_orders`, and only their
latest version (the one not superseded: greatest `updated_at`; equal `updated_at` is one version whose content
is that of its last fetch). The rules are the table contract's, in SQL.
"""

from __future__ import annotations

_LATEST_VERSIONS = """
    select *
    from order_versions
    where superseded_by_updated_at is null
      and order_id in (select order_id from touched_orders)
"""

CANCELED_ORDERS_SQL = f"""
select order_id, order_name, cancelled_at, cancel_reason, financial_status, fulfillment_status, source_name,
       currency, total_price, created_at, updated_at, test
from ({_LATEST_VERSIONS})
where cancelled_at is not null
"""

# A fully canceled order counts every line at its ordered quantity. Otherwise a line's canceled units are its
# `cancel` refund lines plus the units an order edit removed (ordered less current less everything refunded,
# which is why return/no_restock/legacy_restock lines still count in that subtraction).
CANCELED_LINE_ITEMS_SQL = f"""
with latest as ({_LATEST_VERSIONS}),
lines as (
    select order_id, cancelled_at, updated_at, unnest(line_items) as li from latest
),
refund_rows as (
    select order_id, unnest(refunds) as r from latest where cancelled_at is null
),
refund_lines as (
    select order_id, r.created_at as refund_created_at, unnest(r.refund_line_items) as rli from refund_rows
),
per_line as (
    select
        order_id,
        rli.line_item_id as line_item_id,
        coalesce(sum(rli.quantity) filter (where rli.restock_type = 'cancel'), 0) as cancel_quantity,
        coalesce(sum(rli.quantity), 0) as refunded_quantity,
        max(refund_created_at) filter (where rli.restock_type = 'cancel' and rli.quantity > 0)
            as last_cancel_refund_at
    from refund_lines
    group by order_id, rli.line_item_id
),
computed as (
    select
        l.order_id,
        l.li.id as line_item_id,
        l.li.sku as sku,
        l.li.title as title,
        l.li.variant_id as variant_id,
        l.li.product_id as product_id,
        l.li.quantity as quantity,
        case
            when l.cancelled_at is not null then l.li.quantity
            else coalesce(p.cancel_quantity, 0)
                + case
                    when l.li.current_quantity is null then 0
                    else greatest(0, l.li.quantity - l.li.current_quantity - coalesce(p.refunded_quantity, 0))
                  end
        end as canceled_quantity,
        case
            when l.cancelled_at is not null then l.cancelled_at
            else coalesce(p.last_cancel_refund_at, l.updated_at)
        end as canceled_at,
        l.cancelled_at is not null as order_canceled,
        l.updated_at
    from lines l
    left join per_line p on p.order_id = l.order_id and p.line_item_id = l.li.id
)
select * from computed where order_canceled or canceled_quantity > 0
"""

ORDERS_SQL = f"""
select
    order_id, order_name, created_at, updated_at, source_name, financial_status, fulfillment_status,
    cancelled_at, closed_at,
    case
        when cancelled_at is not null then 'canceled'
        when fulfillment_status = 'fulfilled' or closed_at is not null then 'completed'
        when fulfillment_status = 'partial' then 'partially_fulfilled'
        else 'created'
    end as status,
    test,
    last_fetched_at
from ({_LATEST_VERSIONS})
"""

CURRENT_TABLE_SQL: dict[str, str] = {
    "canceled_orders": CANCELED_ORDERS_SQL,
    "canceled_line_items": CANCELED_LINE_ITEMS_SQL,
    "orders": ORDERS_SQL,
}
