"""Asset checks that run on their own, apart from the derivation (which carries the key and reject checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline.metadata import markdown_table
from cancel_pipeline.settings import SETTINGS
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.deliveries import deliveries_table_exists, flagged_deliveries
from cancel_pipeline.warehouse.queries import StuckOrder, stuck_orders
from cancel_pipeline.warehouse.schema import ensure_schema

STUCK_PREVIEW_ROWS = 50
FOLLOW_UP_PREVIEW_ROWS = 50


@dg.asset_check(
    asset="orders",
    description=(
        "Orders still in 'created' (not canceled, fulfilled or closed) longer than their source's threshold ("
        + ", ".join(
            f"{source} {limit.total_seconds() / 3600:g} h"
            for source, limit in SETTINGS.stuck_thresholds.items()
        )
        + "; CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS); test orders excluded. Run the refresh_orders job with "
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
            f"{len(stuck)} orders stuck in 'created'; run refresh_orders with stuck: true"
            if stuck
            else "No order is stuck in 'created'."
        ),
        metadata={
            "stuck_count": len(stuck),
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


@dg.asset_check(
    asset="cancellation_notices",
    description=(
        "Deliveries needing manual follow-up: rejected by their target (400/406), or still failing after the "
        "retry cap. Each is listed with its target's message. Fix the cause (or handle the order by hand), "
        "then run the retry_flagged_deliveries job to try them once more."
    ),
)
def deliveries_needing_follow_up(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Warns when any delivery is flagged for follow-up, listing up to 50 of them."""
    # Read-only: a check must not create the outbox table when no target was ever configured.
    with warehouse_connection(duckdb.database, read_only=True) as con:
        flagged = flagged_deliveries(con) if deliveries_table_exists(con) else []
    by_outcome: dict[str, int] = {}
    for row in flagged:
        by_outcome[row["outcome"]] = by_outcome.get(row["outcome"], 0) + 1
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(flagged)} deliveries need follow-up; run retry_flagged_deliveries once their cause is fixed"
            if flagged
            else "No delivery needs follow-up."
        ),
        metadata={
            "flagged_count": len(flagged),
            "by_outcome": dg.MetadataValue.json(by_outcome),
            "flagged_deliveries": dg.MetadataValue.md(_flagged_table(flagged[:FOLLOW_UP_PREVIEW_ROWS])),
        },
    )


def _flagged_table(rows: list[dict]) -> str:
    table = [
        {
            "order_id": r["order_id"],
            "target": r["target"],
            "outcome": r["outcome"],
            "attempts": r["attempts"],
            "HTTP": r["last_status"],
            "error": r["error"],
        }
        for r in rows
    ]
    return markdown_table(table, empty="_none_")


ASSET_CHECKS = [orders_stuck_in_created, deliveries_needing_follow_up]
