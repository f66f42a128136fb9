"""Raw assets: Shopify order pages landed verbatim in the raw layer, one time window at a time.

`raw_canceled_order_pages` reads `status=cancelled` in 30-minute windows (the fast cancellation feed);
`raw_updated_order_pages` reads `status=any` in hourly windows (partial cancellations only move
`updated_at`). A run of one window, or of a range of windows (backfills run as one run), asks Shopify for
the whole span in one query, from the first window's start less the overlap to the last window's end, then
lands the pages in one transaction: each body as a file in the page store, a row per page in
`raw_order_pages`, each order object parsed once into `raw_order_objects` (see `warehouse.raw_pages`).
Dagster records every window of a range as materialized.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline.defs.conventions import DUCKDB_WRITER_POOL, OWNERS, RAW_GROUP
from cancel_pipeline.defs.ingestion.partitions import (
    CANCELED_ORDER_WINDOWS,
    UPDATED_ORDER_WINDOWS,
    range_partition_key,
    requested_bounds,
)
from cancel_pipeline.settings import SETTINGS, PipelineSettings
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.raw_pages import land_pages, spooled_pages


def fetch_and_land_window(
    context: dg.AssetExecutionContext,
    shopify: ShopifyResource,
    duckdb: DuckDBResource,
    *,
    status: str,
    settings: PipelineSettings = SETTINGS,
) -> dg.MaterializeResult:
    """Fetch the run's window(s) from Shopify into a local spool, then land them in one short transaction."""
    window = context.partition_time_window  # spans every window of a range run
    partition_key = range_partition_key(list(context.partition_keys))
    requested_min, requested_max = requested_bounds(
        window.start, window.end, now=datetime.now(UTC), overlap=settings.overlap
    )
    asset_name = context.asset_key.to_user_string()
    context.log.info(
        f"Fetching status={status} orders ({shopify.chosen_api} API) updated in [{requested_min.isoformat()}, "
        f"{requested_max.isoformat()}] for {partition_key}"
    )
    with shopify.get_client(progress=context.log) as client:  # bulk progress shows in the run's logs
        pages = client.iter_order_pages(
            status=status,
            updated_at_min=requested_min,
            updated_at_max=requested_max,
            streams=shopify.page_streams,
        )
        # The spool is filled before the warehouse is opened: the HTTP fetch never holds DuckDB's file lock.
        with spooled_pages(pages, database=duckdb.database) as spool, duckdb.get_connection() as con:
            landed = land_pages(
                con,
                asset=asset_name,
                partition_key=partition_key,
                window_start=window.start,
                window_end=window.end,
                requested_min=requested_min,
                requested_max=requested_max,
                pages=spool,
            )
            operations = sorted({page.operation for page in spool.spooled})
        stats = client.stats
    context.log.info(
        f"Landed {landed.pages} pages ({landed.orders} orders) for {partition_key}, replacing "
        f"{landed.replaced_pages} earlier pages; {stats.requests} requests, {stats.retries} retries"
    )
    metadata: dict[str, Any] = {
        "pages": landed.pages,
        "orders": landed.orders,
        "requests": stats.requests,
        "api": client.api,
        "read_by": ", ".join(operations),  # orders (pages), bulk (one bulk operation)
        "streams": shopify.page_streams,
        "retries": stats.retries,
        "throttled_429": stats.throttled_429,
        "rate_limit_wait_s": round(stats.rate_limit_wait_s, 3),
        "replaced_pages": landed.replaced_pages,
        "landed_partition_key": partition_key,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "requested_min": requested_min.isoformat(),
        "requested_max": requested_max.isoformat(),
        "dagster/row_count": landed.pages,
    }
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=CANCELED_ORDER_WINDOWS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_WRITER_POOL,
    kinds={"shopify", "duckdb"},
    group_name=RAW_GROUP,
    owners=OWNERS,
)
def raw_canceled_order_pages(
    context: dg.AssetExecutionContext, shopify: ShopifyResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Pages of Shopify orders with `status=cancelled` updated in each 30-minute window (UTC), landed verbatim
    (a row per page in `raw_order_pages`, its body in the page store beside the DuckDB file, its orders
    parsed once into `raw_order_objects`). Each window is read from a few minutes before its start (the
    overlap) to its end, or to now while it is in progress; re-materializing a window replaces its pages."""
    return fetch_and_land_window(context, shopify, duckdb, status="cancelled")


@dg.asset(
    partitions_def=UPDATED_ORDER_WINDOWS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_WRITER_POOL,
    kinds={"shopify", "duckdb"},
    group_name=RAW_GROUP,
    owners=OWNERS,
)
def raw_updated_order_pages(
    context: dg.AssetExecutionContext, shopify: ShopifyResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Pages of every Shopify order (`status=any`) updated in each hourly window (UTC), landed verbatim (a row
    per page in `raw_order_pages`, its body in the page store, its orders parsed into `raw_order_objects`):
    partial cancellations (refunds, order edits) only move `updated_at`. Each window is
    read from a few minutes before its start (the overlap) to its end, or to now while it is in progress;
    re-materializing a window replaces its pages."""
    return fetch_and_land_window(context, shopify, duckdb, status="any")
