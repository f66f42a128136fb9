"""Re-import by order id: the OMS "refresh order", for single orders or every order the stuck check flags."""

from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from cancel_pipeline.defs.conventions import DUCKDB_WRITER_POOL, OWNERS, RAW_GROUP
from cancel_pipeline.settings import SETTINGS
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.queries import stuck_orders
from cancel_pipeline.warehouse.raw_pages import land_pages, spooled_pages
from cancel_pipeline.warehouse.schema import ensure_schema

REFRESH_SOURCE = "refresh"
"""The `asset` value of pages fetched by order id in `raw_order_pages`."""


class RefreshConfig(dg.Config):
    """Which orders to re-fetch: explicit ids, the orders the stuck check flags, or both."""

    order_ids: list[int] = Field(default=[], description="Shopify order ids to re-fetch.")
    stuck: bool = Field(
        default=False,
        description="Also re-fetch every order the orders_stuck_in_created check flags right now.",
    )


@dg.asset(
    pool=DUCKDB_WRITER_POOL,
    kinds={"shopify", "duckdb"},
    group_name=RAW_GROUP,
    owners=OWNERS,
)
def raw_refreshed_order_pages(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    shopify: ShopifyResource,
    duckdb: DuckDBResource,
) -> dg.MaterializeResult:
    """Pages of orders re-fetched by id (`orders.json?ids=...`, 250 at a time), landed in `raw_order_pages`
    with asset 'refresh' and the run id as partition key. Their new versions flow into every table; the
    versions they replace stay in order_versions, marked superseded. Configure `order_ids`, or `stuck: true`
    to take the orders stuck in 'created'."""
    order_ids = list(dict.fromkeys(config.order_ids))
    if config.stuck:
        with duckdb.get_connection() as con:
            ensure_schema(con)
            stuck = stuck_orders(con, datetime.now(UTC), SETTINGS.stuck_thresholds)
            flagged = [order.order_id for order in stuck]
        context.log.info(f"The stuck check flags {len(flagged)} orders")
        requested = set(order_ids)
        order_ids += [order_id for order_id in flagged if order_id not in requested]
    if not order_ids and not config.stuck:
        raise dg.Failure(
            description="refresh_orders_job needs `order_ids` (a list of Shopify order ids) or `stuck: true`.",
        )
    if not order_ids:
        return dg.MaterializeResult(metadata={"requested_orders": 0, "pages": 0, "orders": 0})
    with shopify.get_client() as client:
        with spooled_pages(client.get_orders(order_ids), database=duckdb.database) as spool:
            if refetched := spool.refetch_unparseable(client.refetch_page):
                context.log.warning(
                    f"Fetched {refetched} pages again: their bodies arrived complete but not JSON"
                )
            with duckdb.get_connection() as con:
                landed = land_pages(
                    con,
                    asset=REFRESH_SOURCE,
                    partition_key=context.run.run_id,
                    window_start=None,
                    window_end=None,
                    requested_min=None,
                    requested_max=None,
                    pages=spool,
                    store=shopify.store_identity,
                )
        stats = client.stats
    missing = len(order_ids) - landed.orders
    if missing > 0:
        context.log.warning(
            f"Shopify returned {landed.orders} of {len(order_ids)} requested orders; the others are unknown "
            "to the store or older than 60 days without read_all_orders"
        )
    return dg.MaterializeResult(
        metadata={
            "requested_orders": len(order_ids),
            "orders": landed.orders,
            "missing_orders": max(missing, 0),
            "pages": landed.pages,
            "requests": stats.requests,
            "retries": stats.retries,
            "dagster/row_count": landed.pages,
            "requested_ids_preview": dg.MetadataValue.json(order_ids[:50]),
        }
    )
