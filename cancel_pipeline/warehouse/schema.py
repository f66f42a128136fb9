"""DDL of the tables derived from `raw_order_pages`, and the helpers that open a warehouse with them.

The derived tables carry no PRIMARY KEY constraints: the derivation writes them set-based (delete the rows of
the orders it touches, insert their recomputed rows), and an ART index per table would cost memory and write
time on every batch at the million-order scale. Their keys are instead guaranteed by how they are computed and
verified by the key-uniqueness asset checks (see `queries.duplicate_keys`); `KEY_COLUMNS` names each key.
"""

from __future__ import annotations

import duckdb

from cancel_pipeline.warehouse.raw_pages import RAW_ORDER_PAGES_DDL, migrate_raw_order_pages
from cancel_pipeline.warehouse.typed_orders import LINE_ITEM_TYPE, REFUND_TYPE

# Keys per derived table, as the table contract states them.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "order_versions": ("order_id", "updated_at"),
    "order_rejects": ("page_seq", "position"),
    "canceled_orders": ("order_id",),
    "canceled_line_items": ("order_id", "line_item_id"),
    "orders": ("order_id",),
}

DERIVED_TABLES: tuple[str, ...] = tuple(KEY_COLUMNS)

# The row of `derivation_state` that holds the watermark over `raw_order_pages`.
WATERMARK_SOURCE = "raw_order_pages"

DERIVED_TABLES_DDL = f"""
-- The highest raw page_seq folded into the derived tables, and the one before the latest run (so checks can
-- tell which rejects are new).
create table if not exists derivation_state (
    source             varchar primary key,
    last_page_seq      bigint      not null,
    previous_page_seq  bigint      not null,
    derived_at         timestamptz not null
);

-- Every distinct (order_id, updated_at) ever seen. Line items and refunds are kept as typed LIST/STRUCT
-- columns rather than the order's JSON: they are parsed and validated once, when the version first arrives,
-- so recomputing the current tables never re-parses JSON and stays a columnar scan.
create table if not exists order_versions (
    order_id                  bigint         not null,
    updated_at                timestamptz    not null,
    order_name                varchar,
    created_at                timestamptz    not null,
    cancelled_at              timestamptz,
    cancel_reason             varchar,
    closed_at                 timestamptz,
    financial_status          varchar,
    fulfillment_status        varchar,
    source_name               varchar,
    currency                  varchar,
    total_price               decimal(18,2),
    test                      boolean        not null,
    line_items                {LINE_ITEM_TYPE}[] not null,
    refunds                   {REFUND_TYPE}[] not null,
    asset                     varchar        not null,  -- the page the content was last read from
    partition_key             varchar        not null,
    page_number               integer        not null,
    page_seq                  bigint         not null,
    first_fetched_at          timestamptz    not null,
    last_fetched_at           timestamptz    not null,
    superseded_at             timestamptz,             -- when a later version of the order was known
    superseded_by_updated_at  timestamptz              -- updated_at of the version that replaced this one
);

create table if not exists order_rejects (
    order_id       bigint,
    reason         varchar     not null,  -- stable code, e.g. created_at_unparseable
    detail         varchar     not null,  -- the offending value, for a human
    asset          varchar     not null,
    partition_key  varchar     not null,
    page_number    integer     not null,
    page_seq       bigint      not null,
    position       integer     not null,  -- 1-based position of the object in the page's orders list
    fetched_at     timestamptz not null,
    raw_order      json,
    request_path   varchar     not null
);

create table if not exists canceled_orders (
    order_id            bigint        not null,
    order_name          varchar,
    cancelled_at        timestamptz   not null,
    cancel_reason       varchar,
    financial_status    varchar,
    fulfillment_status  varchar,
    source_name         varchar,
    currency            varchar,
    total_price         decimal(18,2),
    created_at          timestamptz   not null,
    updated_at          timestamptz   not null,
    test                boolean       not null
);

create table if not exists canceled_line_items (
    order_id           bigint      not null,
    line_item_id       bigint      not null,
    sku                varchar,
    title              varchar,
    variant_id         bigint,
    product_id         bigint,
    quantity           bigint      not null,
    canceled_quantity  bigint      not null,
    canceled_at        timestamptz not null,
    order_canceled     boolean     not null,
    updated_at         timestamptz not null
);

create table if not exists orders (
    order_id            bigint      not null,
    order_name          varchar,
    created_at          timestamptz not null,
    updated_at          timestamptz not null,
    source_name         varchar,
    financial_status    varchar,
    fulfillment_status  varchar,
    cancelled_at        timestamptz,
    closed_at           timestamptz,
    status              varchar     not null,  -- canceled, completed, partially_fulfilled or created
    test                boolean     not null,
    last_fetched_at     timestamptz not null
);
"""

DELIVERIES_TABLE = "cancellation_deliveries"

# The outbox (written by `cancel_pipeline.outbox.deliveries`). It is created with the other tables so that
# queries and dashboards find it, empty, before any downstream target is configured.
CANCELLATION_DELIVERIES_DDL = """
create table if not exists cancellation_deliveries (
    order_id          bigint      not null,
    target            varchar     not null,
    outcome           varchar     not null,  -- see cancel_pipeline.outbox.deliveries
    attempts          integer     not null,  -- calls whose answer (or lack of one) counts against the cap
    last_status       integer,               -- HTTP status of the latest answer; null when none came
    error             varchar,               -- the target's message or the transport error, never a secret
    cancel_reason     varchar,               -- Shopify's cancel reason, sent as the notice's reason
    needs_follow_up   boolean     not null,  -- rejected, or gave up after the cap: a person must look
    outcome_unknown   boolean     not null,  -- the latest call may have reached the target unanswered
    queued_at         timestamptz not null,
    first_tried_at    timestamptz,
    last_tried_at     timestamptz,
    delivered_at      timestamptz,
    next_attempt_at   timestamptz,           -- when a 'retrying' row is due again
    claim_token       varchar,               -- the run (and call) holding a 'sending' row
    claimed_until     timestamptz,           -- the lease: past it, the claim is considered lost
    primary key (order_id, target)
);
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw and derived tables and the outbox if missing, and set the session's TimeZone to UTC.

    UTC makes every TIMESTAMPTZ the warehouse shows, and every timestamp string without an offset it parses,
    read as UTC whatever the host's zone is.
    """
    con.execute("set TimeZone = 'UTC'")
    migrate_raw_order_pages(con)  # a file of an older release: before anything reads the new columns
    con.execute(RAW_ORDER_PAGES_DDL)
    con.execute(DERIVED_TABLES_DDL)
    con.execute(CANCELLATION_DELIVERIES_DDL)


def table_column_schema(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(column name, DuckDB type) of `table` in schema `main`, in column order, from information_schema."""
    rows = con.execute(
        """
        select column_name, data_type
        from information_schema.columns
        where table_schema = 'main' and table_name = ?
        order by ordinal_position
        """,
        [table],
    ).fetchall()
    return [(str(name), str(data_type)) for name, data_type in rows]


def derived_table_schemas(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """Column names and types of every derived table, e.g. for Dagster's `dagster/column_schema`."""
    return {table: table_column_schema(con, table) for table in DERIVED_TABLES}
