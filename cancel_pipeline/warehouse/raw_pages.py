"""The raw layer: Shopify order pages landed verbatim, one row per fetched page.

Every fetch is kept, so the tables derived from it can always be rebuilt and a version seen once is never
lost. `page_seq` orders the pages by landing time; the derived tables use it as their watermark.
"""

RAW_ORDER_PAGES_DDL = """
create sequence if not exists raw_order_pages_seq;
create table if not exists raw_order_pages (
    page_seq       bigint      not null default nextval('raw_order_pages_seq'),
    asset          varchar     not null,  -- raw asset name, or 'refresh' for pages fetched by order id
    partition_key  varchar     not null,  -- window key, 'first...last' for a range run, or the refresh run id
    window_start   timestamptz,           -- the Dagster window(s) this fetch covers (null for refresh)
    window_end     timestamptz,
    requested_min  timestamptz,           -- updated_at_min sent to Shopify: window_start less the overlap
    requested_max  timestamptz,           -- updated_at_max sent to Shopify
    page_number    integer     not null,  -- 1-based within one fetch
    fetched_at     timestamptz not null,
    api_version    varchar     not null,
    request_path   varchar     not null,  -- path and query of the first request; never a secret
    order_count    integer     not null,
    body           json        not null,  -- the page as Shopify sent it: {"orders": [...]}
    primary key (asset, partition_key, page_number)
);
"""
