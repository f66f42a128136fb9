"""The outbox's checks: deliveries that need a person, and deliveries that wait too long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from cancel_pipeline.defs.metadata import markdown_table
from cancel_pipeline.outbox.deliveries import deliveries_table_exists, flagged_deliveries, overdue_deliveries
from cancel_pipeline.outbox.targets import TargetsError, enabled_targets
from cancel_pipeline.settings import SETTINGS
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
    # Read-only: a check writes nothing (a warehouse made before the outbox joined the schema may lack it).
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
            "listed": _listed(len(flagged)),
            "flagged_deliveries": dg.MetadataValue.md(_flagged_table(flagged[:FOLLOW_UP_PREVIEW_ROWS])),
        },
    )


@dg.asset_check(
    asset="cancellation_notices",
    description=(
        "Deliveries to an enabled target still undelivered (pending, retrying or being sent) more than "
        f"{SETTINGS.delivery_overdue.total_seconds() / 3600:g} h after they were queued "
        "(CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS): runs that never reach them (a max_per_run too small for "
        "the backlog, notices not running) or a target that keeps failing short of the retry cap."
    ),
)
def deliveries_not_overdue(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Warns when a delivery waits past the overdue threshold, listing up to 50 of them."""
    now = datetime.now(UTC)
    try:
        targets = [target.name for target in enabled_targets()]
    except TargetsError as error:
        raise dg.Failure(description=str(error)) from None
    with warehouse_connection(duckdb.database, read_only=True) as con:
        overdue = (
            overdue_deliveries(con, targets, now, SETTINGS.delivery_overdue)
            if deliveries_table_exists(con)
            else []
        )
    oldest = max((now - row["queued_at"] for row in overdue), default=timedelta(0))
    return dg.AssetCheckResult(
        passed=not overdue,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(overdue)} deliveries queued more than "
            f"{SETTINGS.delivery_overdue.total_seconds() / 3600:g} h ago are still undelivered"
            if overdue
            else "No delivery is overdue."
        ),
        metadata={
            "overdue_count": len(overdue),
            "oldest_age_hours": round(oldest.total_seconds() / 3600, 2),
            "threshold_hours": SETTINGS.delivery_overdue.total_seconds() / 3600,
            "evaluated_at": now.isoformat(),
            "listed": _listed(len(overdue)),
            "overdue_deliveries": dg.MetadataValue.md(_overdue_table(overdue[:FOLLOW_UP_PREVIEW_ROWS])),
        },
    )


def _listed(total: int) -> str:
    """Says whether the table in the metadata shows every row or only the first ones."""
    if total > FOLLOW_UP_PREVIEW_ROWS:
        return f"the first {FOLLOW_UP_PREVIEW_ROWS} of {total}"
    return f"all {total}"


def _overdue_table(rows: list[dict]) -> str:
    table = [
        {
            "order_id": r["order_id"],
            "target": r["target"],
            "outcome": r["outcome"],
            "attempts": r["attempts"],
            "queued at": r["queued_at"],
            "next attempt": r["next_attempt_at"],
            "error": r["error"],
        }
        for r in rows
    ]
    return markdown_table(table, empty="_none_")


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
