"""Asset checks that run on their own, apart from the derivation (which carries the key and reject checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline.warehouse.queries import StuckOrder, stuck_orders
from cancel_pipeline.warehouse.schema import ensure_schema

STUCK_PREVIEW_ROWS = 50


@dg.asset_check(
    asset="orders",
    description=(
        "Orders still in 'created' (not canceled, fulfilled or closed) longer than their source's threshold: "
        "POS 1 hour, web 24 hours, draft orders 48 hours, others 24 hours; test orders excluded. Run the "
        "refresh_orders job with `stuck: true` to re-fetch them: an order Shopify has since fulfilled leaves "
        "the list."
    ),
)
def orders_stuck_in_created(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Warns when orders sit in 'created' past their source's threshold, listing up to 50 of them."""
    now = datetime.now(UTC)
    with duckdb.get_connection() as con:
        ensure_schema(con)
        stuck = stuck_orders(con, now)
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
    if not orders:
        return "_none_"
    lines = ["| order_id | name | source | age (h) | last fetched |", "|---|---|---|---|---|"]
    lines += [
        f"| {o.order_id} | {o.order_name or ''} | {o.source_name or ''} | "
        f"{o.age.total_seconds() / 3600:.1f} | {o.last_fetched_at.isoformat()} |"
        for o in orders
    ]
    return "\n".join(lines)


ASSET_CHECKS = [orders_stuck_in_created]
