"""The stuck-orders check, run on its own apart from the derivation (which carries the key and reject checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline.defs.metadata import markdown_table
from cancel_pipeline.settings import SETTINGS
from cancel_pipeline.warehouse.queries import StuckOrder, stuck_orders
from cancel_pipeline.warehouse.schema import ensure_schema

STUCK_PREVIEW_ROWS = 50


@dg.asset_check(
    asset="orders",
    description=(
        "Orders still in 'created' (not canceled, fulfilled or closed) longer than their source's threshold ("
        + ", ".join(
            f"{source} {limit.total_seconds() / 3600:g} h"
            for source, limit in SETTINGS.stuck_thresholds.items()
        )
        + "; CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS); test orders excluded. Run the refresh_orders_job job with "
        "`stuck: true` to re-fetch them: an order Shopify has since fulfilled leaves the list."
    ),
)
def orders_stuck_in_created(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Warns when orders sit in 'created' past their source's threshold, listing up to 50 of them."""
    now = datetime.now(UTC)
    with duckdb.get_connection() as con:
        ensure_schema(con)
        stuck = stuck_orders(con, now, SETTINGS.stuck_thresholds)
    oldest = max((order.age for order in stuck), default=timedelta(0))
    return dg.AssetCheckResult(
        passed=not stuck,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(stuck)} orders stuck in 'created'; run refresh_orders_job with stuck: true"
            if stuck
            else "No order is stuck in 'created'."
        ),
        metadata={
            "stuck_count": len(stuck),
            "listed": (
                f"the first {STUCK_PREVIEW_ROWS} of {len(stuck)}, oldest first"
                if len(stuck) > STUCK_PREVIEW_ROWS
                else f"all {len(stuck)}"
            ),
            "oldest_age_hours": round(oldest.total_seconds() / 3600, 2),
            "evaluated_at": now.isoformat(),
            "stuck_orders": dg.MetadataValue.md(_stuck_table(stuck[:STUCK_PREVIEW_ROWS])),
        },
    )


def _stuck_table(orders: list[StuckOrder]) -> str:
    rows = [
        {
            "order_id": o.order_id,
            "name": o.order_name,
            "source": o.source_name,
            "age (h)": f"{o.age.total_seconds() / 3600:.1f}",
            "last fetched": o.last_fetched_at,
        }
        for o in orders
    ]
    return markdown_table(rows, empty="_none_")
