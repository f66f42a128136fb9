"""SQL that unnests a range of raw pages into one typed row per order object, with a reject reason.

Each page body is parsed once against an explicit structure (`json_transform`), never an inferred one and
never per field. Every field is first read as text or JSON so that "present but unparseable" can be told apart
from "missing", then cast with TRY_CAST. The first failing rule, in the order of `REJECT_REASONS`, becomes
the object's `reason`; objects without one are good versions. Only a rejected object is extracted verbatim
(by its position in the page), because re-serializing every object costs as much as the rest of the step.
"""

from __future__ import annotations

from cancel_pipeline.warehouse.schema import LINE_ITEM_TYPE, REFUND_LINE_ITEM_TYPE

REJECT_REASONS: tuple[str, ...] = (
    "id_not_integer",
    "created_at_missing",
    "created_at_unparseable",
    "updated_at_missing",
    "updated_at_unparseable",
    "cancelled_at_unparseable",
    "closed_at_unparseable",
    "total_price_unparseable",
    "line_items_invalid",
    "refunds_invalid",
    "refund_created_at_unparseable",
)

# Text or JSON for every field, so validation sees what Shopify actually sent.
_ORDER_FIELDS = (
    '{"id":"JSON","name":"VARCHAR","created_at":"VARCHAR","updated_at":"VARCHAR","cancelled_at":"VARCHAR",'
    '"cancel_reason":"VARCHAR","closed_at":"VARCHAR","financial_status":"VARCHAR",'
    '"fulfillment_status":"VARCHAR","source_name":"VARCHAR","currency":"VARCHAR","total_price":"VARCHAR",'
    '"test":"VARCHAR","refunds":"JSON","line_items":'
    # Line items are structured in the same pass (re-serializing them to JSON and parsing them again cost more
    # than the rest); `id` and `quantity` stay JSON so a non-integer can be told from a missing one. A list
    # element that is not an object comes back with every field null, a non-list `line_items` as null.
    '[{"id":"JSON","variant_id":"BIGINT","product_id":"BIGINT","sku":"VARCHAR","title":"VARCHAR",'
    '"quantity":"JSON","current_quantity":"BIGINT"}]}'
)
_REFUNDS_STRUCTURE = (
    '[{"id":"BIGINT","created_at":"VARCHAR",'
    '"refund_line_items":[{"line_item_id":"BIGINT","quantity":"BIGINT","restock_type":"VARCHAR"}]}]'
)
_INTEGER_JSON_TYPES = "('UBIGINT', 'BIGINT')"

# Parameters: the first and last page_seq of the batch (inclusive) and the watermark below which pages are done.
TYPED_ORDERS_SELECT = f"""
with pages as (
    select page_seq, asset, partition_key, page_number, fetched_at, request_path,
           json_transform(body, '{{"orders":[{_ORDER_FIELDS}]}}').orders as objects
    from raw_order_pages
    where page_seq between $first_seq and $last_seq and page_seq > $watermark
),
fields as (
    -- Parallel unnests of equal-length lists zip together: an object's fields and its position.
    -- (UNNEST ... WITH ORDINALITY is far slower here.)
    select page_seq, asset, partition_key, page_number, fetched_at, request_path,
           unnest(objects) as f,
           generate_subscripts(objects, 1)::integer as position
    from pages
),
checked as (
    select
        x.*,
        case when json_type(f.id) in {_INTEGER_JSON_TYPES} then try_cast(f.id::varchar as bigint) end
            as order_id,
        try_cast(f.created_at as timestamptz) as created_at_ts,
        try_cast(f.updated_at as timestamptz) as updated_at_ts,
        try_cast(f.cancelled_at as timestamptz) as cancelled_at_ts,
        try_cast(f.closed_at as timestamptz) as closed_at_ts,
        try_cast(f.total_price as decimal(18,2)) as total_price_dec,
        f.line_items is not null
            and coalesce(list_bool_and(list_transform(
                f.line_items,
                lambda e: e is not null
                    and coalesce(json_type(e.id) in {_INTEGER_JSON_TYPES}, false)
                    and coalesce(json_type(e.quantity) in {_INTEGER_JSON_TYPES}, false)
            )), true) as line_items_shape_ok,
        list_transform(f.line_items, lambda e: struct_pack(
            id := try_cast(e.id::varchar as bigint), variant_id := e.variant_id, product_id := e.product_id,
            sku := e.sku, title := e.title, quantity := try_cast(e.quantity::varchar as bigint),
            current_quantity := e.current_quantity
        )) as line_items_typed,
        f.refunds is null or json_type(f.refunds) = 'NULL' or (
            json_type(f.refunds) = 'ARRAY'
            and coalesce(list_bool_and(list_transform(
                json_extract(f.refunds, '$[*]'), lambda e: json_type(e) = 'OBJECT'
            )), true)
        ) as refunds_shape_ok,
        coalesce(from_json(f.refunds, '{_REFUNDS_STRUCTURE}'), []) as refunds_text
    from fields x
),
reasoned as (
    select
        c.*,
        case
            when order_id is null then 'id_not_integer'
            when f.created_at is null then 'created_at_missing'
            when created_at_ts is null then 'created_at_unparseable'
            when f.updated_at is null then 'updated_at_missing'
            when updated_at_ts is null then 'updated_at_unparseable'
            when f.cancelled_at is not null and cancelled_at_ts is null then 'cancelled_at_unparseable'
            when f.closed_at is not null and closed_at_ts is null then 'closed_at_unparseable'
            when f.total_price is not null and total_price_dec is null then 'total_price_unparseable'
            when not line_items_shape_ok
                -- integers beyond BIGINT, and one line item id used twice, make the line key ambiguous
                or list_bool_or(list_transform(line_items_typed, lambda li: li.id is null or li.quantity is null))
                or len(list_distinct(list_transform(line_items_typed, lambda li: li.id)))
                    < len(line_items_typed)
                then 'line_items_invalid'
            when not refunds_shape_ok then 'refunds_invalid'
            when list_bool_or(list_transform(
                refunds_text, lambda r: r.created_at is not null and try_cast(r.created_at as timestamptz) is null
            )) then 'refund_created_at_unparseable'
        end as reason
    from checked c
),
rejected as (
    -- Only a rejected object is kept verbatim, so only its page is read again, and only for that object
    -- (carrying every page's body along its 250 unnested rows would copy it 250 times).
    select r.*,
           json_extract(p.body, '$.orders[' || (r.position - 1) || ']') as obj
    from reasoned r
    left join (
        select page_seq, body from raw_order_pages where page_seq between $first_seq and $last_seq
    ) p on p.page_seq = r.page_seq and r.reason is not null
)
select
    page_seq, asset, partition_key, page_number, fetched_at, request_path, position, reason,
    case reason
        when 'id_not_integer' then 'id=' || coalesce(f.id::varchar, 'missing')
            || case when json_type(obj) is distinct from 'OBJECT' then ' (not an object)' else '' end
        when 'created_at_missing' then 'created_at missing or null'
        when 'created_at_unparseable' then 'created_at=' || f.created_at
        when 'updated_at_missing' then 'updated_at missing or null'
        when 'updated_at_unparseable' then 'updated_at=' || f.updated_at
        when 'cancelled_at_unparseable' then 'cancelled_at=' || f.cancelled_at
        when 'closed_at_unparseable' then 'closed_at=' || f.closed_at
        when 'total_price_unparseable' then 'total_price=' || f.total_price
        when 'line_items_invalid' then 'line_items='
            || left(coalesce(nullif(json_extract(obj, '$.line_items')::varchar, 'null'), 'missing'), 200)
        when 'refunds_invalid' then 'refunds=' || left(f.refunds::varchar, 200)
        when 'refund_created_at_unparseable' then 'refund created_at=' || coalesce(list_first(list_filter(
            list_transform(refunds_text, lambda r: r.created_at),
            lambda t: try_cast(t as timestamptz) is null
        )), '')
    end as detail,
    obj as raw_order,
    order_id,
    updated_at_ts as updated_at,
    f.name as order_name,
    created_at_ts as created_at,
    cancelled_at_ts as cancelled_at,
    f.cancel_reason as cancel_reason,
    closed_at_ts as closed_at,
    f.financial_status as financial_status,
    f.fulfillment_status as fulfillment_status,
    f.source_name as source_name,
    f.currency as currency,
    total_price_dec as total_price,
    coalesce(try_cast(f.test as boolean), false) as test,
    coalesce(line_items_typed, [])::{LINE_ITEM_TYPE}[] as line_items,
    list_transform(refunds_text, lambda r: struct_pack(
        id := r.id,
        created_at := try_cast(r.created_at as timestamptz),
        refund_line_items := coalesce(r.refund_line_items, [])::{REFUND_LINE_ITEM_TYPE}[]
    )) as refunds
from rejected
"""

STAGE_ORDERS_SQL = "create or replace temp table stage_orders as " + TYPED_ORDERS_SELECT
"""Replaces the temp table `stage_orders` with the typed orders of a range of pages."""

APPEND_STAGE_ORDERS_SQL = "insert into stage_orders " + TYPED_ORDERS_SELECT
"""Appends the typed orders of a further range of pages to `stage_orders`."""
