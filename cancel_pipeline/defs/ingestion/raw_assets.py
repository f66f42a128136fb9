"""Raw assets: Shopify order pages landed verbatim in the raw layer, partitioned by UTC day.

`raw_canceled_order_pages` reads `status=cancelled` (the fast cancellation feed, ticking every 30 minutes);
`raw_updated_order_pages` reads `status=any` (partial cancellations only move `updated_at`; hourly). A tick
(run tag `cancel_pipeline/read=new`) reads only what is new in its day since the day's last landed page,
less the overlap, and its pages join the day's current ones. Any other run of one day, or of a range of
days (backfills run as one run), re-reads the whole span in one query, from the first day's start less the
overlap to the last day's end, and supersedes the span's earlier pages (they are kept). Either way the
pages land in one transaction: each body as a file in the page store, a row per page in `raw_order_pages`,
each order object parsed once into `raw_order_objects` (see `warehouse.raw_pages`). Dagster records every
day of a range as materialized.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline import clock
from cancel_pipeline.defs.conventions import (
    DUCKDB_WRITER_POOL,
    OWNERS,
    RAW_GROUP,
    READ_NEW,
    READ_TAG,
    READ_WHOLE,
)
from cancel_pipeline.defs.ingestion.partitions import (
    CANCELED_ORDER_WINDOWS,
    UPDATED_ORDER_WINDOWS,
    incremental_bounds,
    range_partition_key,
    requested_bounds,
)
from cancel_pipeline.settings import SETTINGS, PipelineSettings
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.raw_pages import (
    check_store,
    ensure_raw_order_pages,
    land_pages,
    landed_coverage,
    prune_superseded,
    spooled_pages,
)


def fetch_and_land_window(
    context: dg.AssetExecutionContext,
    shopify: ShopifyResource,
    duckdb: DuckDBResource,
    *,
    status: str,
    settings: PipelineSettings = SETTINGS,
) -> dg.MaterializeResult:
    """Fetch the run's day(s) from Shopify into a local spool, then land them in one short transaction."""
    window = context.partition_time_window  # spans every day of a range run
    keys = list(context.partition_keys)
    partition_key = range_partition_key(keys)
    read = context.run.tags.get(READ_TAG, READ_WHOLE)
    if read not in (READ_NEW, READ_WHOLE):
        raise dg.Failure(f"Run tag {READ_TAG}={read!r} is not {READ_NEW!r} or {READ_WHOLE!r}")
    if read == READ_NEW and len(keys) != 1:
        raise dg.Failure(
            f"Run tag {READ_TAG}={READ_NEW} reads one day; this run has {len(keys)} ({partition_key})"
        )
    asset_name = context.asset_key.to_user_string()
    now = clock.utc_now()
    # Checked before fetching: a warehouse of another store refuses the pages anyway, after a long fetch.
    with duckdb.get_connection() as con:
        ensure_raw_order_pages(con)
        check_store(con, shopify.store_identity)
        covered = landed_coverage(con, asset_name, {partition_key: (window.start, window.end)})[partition_key]
    if read == READ_NEW:
        requested_min, requested_max = incremental_bounds(
            window.start, window.end, covered, now=now, overlap=settings.overlap
        )
    else:
        requested_min, requested_max = requested_bounds(
            window.start, window.end, now=now, overlap=settings.overlap
        )
    context.log.info(
        f"Fetching status={status} orders ({shopify.chosen_api} API) updated in [{requested_min.isoformat()}, "
        f"{requested_max.isoformat()}] for {partition_key} (read {read})"
    )
    with shopify.get_client(progress=context.log) as client:  # bulk progress shows in the run's logs
        pages = client.iter_order_pages(
            status=status,
            updated_at_min=requested_min,
            updated_at_max=requested_max,
            streams=shopify.page_streams,
        )
        # The spool is filled before the warehouse is opened: the HTTP fetch never holds DuckDB's file lock.
        with spooled_pages(pages, database=duckdb.database) as spool:
            if refetched := spool.refetch_unparseable(client.refetch_page):
                context.log.warning(
                    f"Fetched {refetched} pages again: their bodies arrived complete but not JSON"
                )
            with duckdb.get_connection() as con:
                landed = land_pages(
                    con,
                    asset=asset_name,
                    partition_key=partition_key,
                    window_start=window.start,
                    window_end=window.end,
                    requested_min=requested_min,
                    requested_max=requested_max,
                    pages=spool,
                    store=shopify.store_identity,
                    supersede=read == READ_WHOLE,
                )
                operations = sorted({page.operation for page in spool.spooled})
                pruned = 0
                if settings.superseded_retention_days is not None:
                    pruned = prune_superseded(
                        con, superseded_before=now - timedelta(days=settings.superseded_retention_days)
                    )
        stats = client.stats
    context.log.info(
        f"Landed {landed.pages} pages ({landed.orders} orders) for {partition_key}, superseding "
        f"{landed.superseded_pages} earlier pages (pruned {pruned}); {stats.requests} requests, "
        f"{stats.retries} retries"
    )
    metadata: dict[str, Any] = {
        "pages": landed.pages,
        "orders": landed.orders,
        "requests": stats.requests,
        "api": client.api,
        "read_by": ", ".join(operations),  # orders (pages), bulk (bulk operations)
        "streams": shopify.page_streams,
        "retries": stats.retries,
        "throttled_429": stats.throttled_429,
        "rate_limit_wait_s": round(stats.rate_limit_wait_s, 3),
        "read": read,
        "superseded_pages": landed.superseded_pages,
        "pruned_pages": pruned,
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
    """Pages of Shopify orders with `status=cancelled` updated in each UTC day, landed verbatim (a row per
    page in `raw_order_pages`, its body in the page store beside the DuckDB file, its orders parsed once
    into `raw_order_objects`). The schedule's ticks (every 30 minutes) and the cancellation sensor read only
    what is new since the day's last landed page, less the overlap; materializing a day otherwise re-reads
    it whole, from a few minutes before its start, and supersedes its earlier pages (they are kept)."""
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
    """Pages of every Shopify order (`status=any`) updated in each UTC day, landed verbatim (a row per page
    in `raw_order_pages`, its body in the page store, its orders parsed into `raw_order_objects`): partial
    cancellations (refunds, order edits) only move `updated_at`. The schedule's hourly ticks read only what
    is new since the day's last landed page, less the overlap; materializing a day otherwise re-reads it
    whole and supersedes its earlier pages (they are kept)."""
    return fetch_and_land_window(context, shopify, duckdb, status="any")
