"""The outbox's check: deliveries that need a person."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline.defs.metadata import markdown_table
from cancel_pipeline.outbox.deliveries import deliveries_table_exists, flagged_deliveries
from cancel_pipeline.warehouse.connection import warehouse_connection

FOLLOW_UP_PREVIEW_ROWS = 50


@dg.asset_check(
    asset="cancellation_notices",
    description=(
        "Deliveries needing manual follow-up: rejected by their target (400/406), or still failing after the "
        "retry cap. Each is listed with its target's message. Fix the cause (or handle the order by hand), "
        "then run the retry_flagged_deliveries_job job to try them once more."
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
            f"{len(flagged)} deliveries need follow-up; run retry_flagged_deliveries_job once their cause is fixed"
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
