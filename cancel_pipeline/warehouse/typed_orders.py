"""SQL that parses a chunk of landed pages once into one typed row per order object, with a reject reason.

Each page body is parsed once, at landing, against an explicit structure (`json_transform`), never an
inferred one and never per field. Every field is first read as text or JSON so that "present but
unparseable" can be told apart from "missing", then cast with TRY_CAST. The first failing rule, in the order
of `REJECT_REASONS`, becomes the object's `reason`; objects without one are good versions. Only a rejected
object is extracted verbatim (by its position in its page, `REJECTED_OBJECTS_SQL`), because re-serializing
every object would cost as much as the parse.
"""

from __future__ import annotations

import json

LINE_ITEM_TYPE = (
    "STRUCT(id BIGINT, variant_id BIGINT, product_id BIGINT, sku VARCHAR, title VARCHAR, "
    "quantity BIGINT, current_quantity BIGINT)"
)
REFUND_LINE_ITEM_TYPE = "STRUCT(line_item_id BIGINT, quantity BIGINT, restock_type VARCHAR)"
REFUND_TYPE = f"STRUCT(id BIGINT, created_at TIMESTAMPTZ, refund_line_items {REFUND_LINE_ITEM_TYPE}[])"

# What the parse keeps of an order object: text or JSON for every field, so validation sees what Shopify
# actually sent. Line items are structured in the same pass; their `id` and `quantity` stay JSON so a
# non-integer can be told from a missing one. A list element that is not an object comes back with every
# field null, a non-list `line_items` as null.
_LINE_ITEM_FIELDS = {
    "id": "JSON",
    "variant_id": "BIGINT",
    "product_id": "BIGINT",
    "sku": "VARCHAR",
    "title": "VARCHAR",
    "quantity": "JSON",
    "current_quantity": "BIGINT",
}
_ORDER_FIELDS = {
    "id": "JSON",
    "name": "VARCHAR",
    "created_at": "VARCHAR",
    "updated_at": "VARCHAR",
    "cancelled_at": "VARCHAR",
    "cancel_reason": "VARCHAR",
    "closed_at": "VARCHAR",
    "financial_status": "VARCHAR",
    "fulfillment_status": "VARCHAR",
    "source_name": "VARCHAR",
    "currency": "VARCHAR",
    "total_price": "VARCHAR",
    "test": "VARCHAR",
    "tags": "VARCHAR",
    "refunds": "JSON",
    "line_items": [_LINE_ITEM_FIELDS],
}
PAGE_STRUCTURE = json.dumps({"orders": [_ORDER_FIELDS]})

RAW_ORDER_OBJECTS_DDL = f"""
-- Every order object of every landed page, parsed, validated and typed once, at landing.
create table if not exists raw_order_objects (
    page_seq            bigint      not null,  -- the page in raw_order_pages
    position            integer     not null,  -- 1-based position of the object in the page's orders list
    reason              varchar,               -- why the object is rejected (see REJECT_REASONS)
    detail              varchar,               -- the offending value, for a human (rejects only)
    raw_order           json,                  -- the object verbatim (rejects only)
    order_id            bigint,
    updated_at          timestamptz,
    order_name          varchar,
    created_at          timestamptz,
    cancelled_at        timestamptz,
    cancel_reason       varchar,
    closed_at           timestamptz,
    financial_status    varchar,
    fulfillment_status  varchar,
    source_name         varchar,
    currency            varchar,
    total_price         decimal(18,2),
    test                boolean     not null,
    tags                varchar,
    line_items          {LINE_ITEM_TYPE}[] not null,
    refunds             {REFUND_TYPE}[]
);
"""
"""The table `TYPED_OBJECTS_SELECT` fills: one row per order object of each landed page."""

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

_REFUNDS_STRUCTURE = (
    '[{"id":"BIGINT","created_at":"VARCHAR",'
    '"refund_line_items":[{"line_item_id":"BIGINT","quantity":"BIGINT","restock_type":"VARCHAR"}]}]'
)
_INTEGER_JSON_TYPES = "('UBIGINT', 'BIGINT')"

# Parameters: the chunk's page files and, in the same order, their page_seq. Each source below defines `f`:
# one row per order object with its fields as REST spells them (text or JSON), which `_TYPED_TAIL` checks
# and types the same way whatever the API.
_REST_SOURCE = f"""
parsed as (
    select page.page_seq, json_transform(file.content, '{PAGE_STRUCTURE}').orders as objects
    from read_text($files) as file
    join (select unnest($files) as filename, unnest($seqs) as page_seq) as page using (filename)
),
f as (
    select page_seq, position, unnest(o)
    from (
        -- Parallel unnests of equal-length lists zip together: an object and its position.
        -- (UNNEST ... WITH ORDINALITY is far slower here.)
        select page_seq, unnest(objects) as o, generate_subscripts(objects, 1)::integer as position
        from parsed
    )
)"""

_TYPED_TAIL = f"""
checked as (
    select
        x.*,
        case when json_type(id) in {_INTEGER_JSON_TYPES} then try_cast(id::varchar as bigint) end
            as order_id,
        try_cast(created_at as timestamptz) as created_at_ts,
        try_cast(updated_at as timestamptz) as updated_at_ts,
        try_cast(cancelled_at as timestamptz) as cancelled_at_ts,
        try_cast(closed_at as timestamptz) as closed_at_ts,
        try_cast(total_price as decimal(18,2)) as total_price_dec,
        line_items is not null
            and coalesce(list_bool_and(list_transform(
                line_items,
                lambda e: e is not null
                    and coalesce(json_type(e.id) in {_INTEGER_JSON_TYPES}, false)
                    and coalesce(json_type(e.quantity) in {_INTEGER_JSON_TYPES}, false)
            )), true) as line_items_shape_ok,
        list_transform(line_items, lambda e: struct_pack(
            id := try_cast(e.id::varchar as bigint), variant_id := e.variant_id, product_id := e.product_id,
            sku := e.sku, title := e.title, quantity := try_cast(e.quantity::varchar as bigint),
            current_quantity := e.current_quantity
        )) as line_items_typed,
        refunds is null or json_type(refunds) = 'NULL' or (
            json_type(refunds) = 'ARRAY'
            and coalesce(list_bool_and(list_transform(
                json_extract(refunds, '$[*]'), lambda e: json_type(e) = 'OBJECT'
            )), true)
        ) as refunds_shape_ok,
        coalesce(from_json(refunds, '{_REFUNDS_STRUCTURE}'), []) as refunds_text
    from f x
),
reasoned as (
    select
        c.*,
        case
            when order_id is null then 'id_not_integer'
            when created_at is null then 'created_at_missing'
            when created_at_ts is null then 'created_at_unparseable'
            when updated_at is null then 'updated_at_missing'
            when updated_at_ts is null then 'updated_at_unparseable'
            when cancelled_at is not null and cancelled_at_ts is null then 'cancelled_at_unparseable'
            when closed_at is not null and closed_at_ts is null then 'closed_at_unparseable'
            when total_price is not null and total_price_dec is null then 'total_price_unparseable'
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
)
select
    page_seq, position, reason,
    case reason
        when 'id_not_integer' then 'id=' || coalesce(id::varchar, 'missing')
        when 'created_at_missing' then 'created_at missing or null'
        when 'created_at_unparseable' then 'created_at=' || created_at
        when 'updated_at_missing' then 'updated_at missing or null'
        when 'updated_at_unparseable' then 'updated_at=' || updated_at
        when 'cancelled_at_unparseable' then 'cancelled_at=' || cancelled_at
        when 'closed_at_unparseable' then 'closed_at=' || closed_at
        when 'total_price_unparseable' then 'total_price=' || total_price
        when 'line_items_invalid' then 'line_items='  -- completed from the raw object, see REJECTED_OBJECTS_SQL
        when 'refunds_invalid' then 'refunds=' || left(refunds::varchar, 200)
        when 'refund_created_at_unparseable' then 'refund created_at=' || coalesce(list_first(list_filter(
            list_transform(refunds_text, lambda r: r.created_at),
            lambda t: try_cast(t as timestamptz) is null
        )), '')
    end as detail,
    null::json as raw_order,
    order_id,
    updated_at_ts as updated_at,
    "name" as order_name,
    created_at_ts as created_at,
    cancelled_at_ts as cancelled_at,
    cancel_reason as cancel_reason,
    closed_at_ts as closed_at,
    financial_status as financial_status,
    fulfillment_status as fulfillment_status,
    source_name as source_name,
    currency as currency,
    total_price_dec as total_price,
    coalesce(try_cast(test as boolean), false) as test,
    tags,
    coalesce(line_items_typed, [])::{LINE_ITEM_TYPE}[] as line_items,
    list_transform(refunds_text, lambda r: struct_pack(
        id := r.id,
        created_at := try_cast(r.created_at as timestamptz),
        refund_line_items := coalesce(r.refund_line_items, [])::{REFUND_LINE_ITEM_TYPE}[]
    )) as refunds
from reasoned
"""

TYPED_OBJECTS_SELECT = f"with {_REST_SOURCE},{_TYPED_TAIL}"
"""One typed row per order object of a chunk of REST pages (`{"orders": [...]}`)."""

INSERT_OBJECTS_SQL = "insert into raw_order_objects by name " + TYPED_OBJECTS_SELECT
"""Appends the typed objects of a chunk of REST pages to `raw_order_objects`."""


def complete_rejects_sql(
    rejects_by_file: dict[tuple[int, str], list[int]],
    *,
    object_paths: tuple[str, ...] = ("$.orders",),
    line_items_key: str = "line_items",
) -> str:
    """SQL completing some pages' rejects in `raw_order_objects` with their object verbatim (and the details
    that quote it).

    `rejects_by_file` maps (page_seq, page file) to the 1-based positions of the page's rejects (at least
    one page). Each page is parsed once, extracting only its rejects: JSON paths must be constants, so each
    page gets its own branch (a chunk has a few dozen pages at most). Parsing a page again for each reject
    cost several times as much, and re-serializing all of a page's objects twice as much.

    `object_paths` are where a page keeps its objects (the first that holds one wins: a GraphQL page has
    them under `orders.nodes` or `nodes`); `line_items_key` is the object's line items field.
    """
    branches = []
    for (page_seq, path), positions in sorted(rejects_by_file.items()):
        file_literal = "'" + path.replace("'", "''") + "'"
        extracts = [
            "json_extract(content, ["
            + ", ".join(f"'{prefix}[{int(position) - 1}]'" for position in positions)
            + "])"
            for prefix in object_paths
        ]
        found = extracts[-1]
        for prefix, extract in zip(object_paths[-2::-1], extracts[-2::-1], strict=True):
            found = f"case when json_exists(content, '{prefix}') then {extract} else {found} end"
        found = f"unnest({found})"
        branches.append(
            f"select {int(page_seq)} as page_seq, unnest({[int(p) for p in positions]}) as position, "
            f"{found} as raw_order from read_text({file_literal})"
        )
    seqs = [int(page_seq) for page_seq, _ in rejects_by_file]
    return f"""
update raw_order_objects o
set raw_order = r.raw_order,
    detail = case
        when o.reason = 'id_not_integer' and json_type(r.raw_order) is distinct from 'OBJECT'
            then o.detail || ' (not an object)'
        when o.reason = 'line_items_invalid' then o.detail || left(
            coalesce(nullif(json_extract(r.raw_order, '$.{line_items_key}')::varchar, 'null'), 'missing'), 200
        )
        else o.detail
    end
from ({" union all ".join(branches)}) r
where o.page_seq between {min(seqs)} and {max(seqs)} and o.page_seq = r.page_seq and o.position = r.position
"""
