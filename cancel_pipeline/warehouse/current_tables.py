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
-- Every version of the touched open orders, for the time an edit removal first showed: Shopify gives no time
-- for an edit, so a line canceled only by an edit takes the updated_at of the first version showing its
-- current removal (the minimum over versions, whatever order they were fetched in).
history as (
    select order_id, updated_at, line_items, refunds
    from order_versions
    where cancelled_at is null
      -- only orders whose latest version shows units removed by an edit need their history
      and order_id in (
          select order_id from lines
          where cancelled_at is null and li.current_quantity is not null and li.current_quantity < li.quantity
      )
),
history_refunded as (
    select order_id, updated_at, rli.line_item_id as line_item_id, sum(rli.quantity) as refunded_quantity
    from (
        select order_id, updated_at, unnest(r.refund_line_items) as rli
        from (select order_id, updated_at, unnest(refunds) as r from history)
    )
    group by all
),
history_removed as (
    select
        h.order_id,
        h.li.id as line_item_id,
        h.updated_at,
        greatest(0, h.li.quantity - h.li.current_quantity - coalesce(hr.refunded_quantity, 0)) as removed
    from (select order_id, updated_at, unnest(line_items) as li from history) h
    left join history_refunded hr
        on hr.order_id = h.order_id and hr.updated_at = h.updated_at and hr.line_item_id = h.li.id
    where h.li.current_quantity is not null
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
            else coalesce(
                p.last_cancel_refund_at,
                (
                    select min(hr.updated_at)
                    from history_removed hr
                    where hr.order_id = l.order_id
                      and hr.line_item_id = l.li.id
                      and hr.removed > 0
                      and hr.removed >= greatest(
                          0, l.li.quantity - l.li.current_quantity - coalesce(p.refunded_quantity, 0)
                      )
                ),
                l.updated_at
            )
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
