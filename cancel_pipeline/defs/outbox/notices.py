"""The `cancellation_notices` asset: tell each downstream target of the orders canceled at the store.

It runs after `canceled_orders` in every job that updates it, so a new cancellation is propagated in the same
run that first sees it. The work and its guarantees live in `cancel_pipeline.outbox.deliver`; this module
turns a run of it into Dagster metadata and logs.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from cancel_pipeline.defs.conventions import DUCKDB_WRITER_POOL, OUTBOX_GROUP, OWNERS
from cancel_pipeline.defs.metadata import markdown_table
from cancel_pipeline.outbox.deliver import BadCredentials, DeliveryRun, deliver_cancellations
from cancel_pipeline.outbox.deliveries import delivery_rows, outcome_counts
from cancel_pipeline.outbox.demo_target import reachable_targets
from cancel_pipeline.outbox.targets import (
    DEMO_TARGET_VARIABLE,
    TARGETS_FILE_VARIABLE,
    MissingToken,
    TargetsError,
    enabled_targets,
    load_targets,
)

PREVIEW_ROWS = 20
RUN_OUTCOMES = ("delivered", "not_found", "rejected", "retrying", "gave_up", "skipped", "claim_lost")
NO_TARGET_MESSAGE = (
    f"No downstream target is configured ({TARGETS_FILE_VARIABLE} names no targets file and "
    f"{DEMO_TARGET_VARIABLE} is off): no cancellation notice was sent."
)


# The targets file is re-read by every run (edits apply to the next run), and also read once here so that an
# invalid file fails the load of the definitions, naming the file and the key, instead of a run later.
load_targets()


class NoticesConfig(dg.Config):
    """Run configuration of the notices."""

    retry_flagged: bool = Field(
        default=False,
        description="First make every delivery flagged for follow-up (rejected, or given up after the "
        "retry cap) due again, for one more attempt each.",
    )


@dg.asset(
    deps=["canceled_orders"],
    # Follows the tables, in the same automation run when they are derived because raw pages landed.
    automation_condition=dg.AutomationCondition.eager(),
    pool=DUCKDB_WRITER_POOL,
    kinds={"duckdb", "api"},
    group_name=OUTBOX_GROUP,
    owners=OWNERS,
    metadata={"dagster/table_name": "main.cancellation_deliveries"},
)
def cancellation_notices(
    context: dg.AssetExecutionContext, config: NoticesConfig, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Cancel Order calls to every enabled downstream target, one per newly canceled order and target,
    recorded in cancellation_deliveries (the outbox: attempts, last HTTP status, outcome, error). A delivered
    order is never sent again, even when runs overlap; an order canceled again in a new version is not
    re-sent. 500s, timeouts and connection errors are retried on later runs with backoff up to a cap, then
    flagged; 400/406 are flagged for follow-up; 404 is recorded; a 401 fails the run. With no target
    configured it sends nothing and says so."""
    try:
        targets = enabled_targets()
    except TargetsError as error:
        raise dg.Failure(description=str(error)) from None
    if not targets:
        context.log.info(NO_TARGET_MESSAGE)
        return dg.MaterializeResult(
            metadata={"targets": dg.MetadataValue.json([]), "status": NO_TARGET_MESSAGE}
        )
    context.log.info(f"Delivering cancellation notices to {', '.join(t.name for t in targets)}")
    with reachable_targets(targets) as live_targets:
        try:
            run = deliver_cancellations(
                duckdb.get_connection,
                live_targets,
                run_id=context.run.run_id,
                retry_flagged=config.retry_flagged,
                logger=context.log,
            )
        except (BadCredentials, MissingToken) as error:
            context.log.error(str(error))
            raise dg.Failure(description=str(error)) from None
    with duckdb.get_connection() as con:
        preview = delivery_rows(con, run.attempted_keys()[:PREVIEW_ROWS])
        by_target = outcome_counts(con)
    context.log.info(_summary_line(run))
    return dg.MaterializeResult(metadata=notices_metadata(run, preview, by_target))


def notices_metadata(
    run: DeliveryRun, preview: Sequence[dict[str, Any]], by_target: Sequence[tuple[str, str, int]]
) -> dict[str, Any]:
    """Counts by outcome for this run, the table's totals per target and outcome, and a preview."""
    totals = run.totals()
    metadata: dict[str, Any] = {
        "targets": dg.MetadataValue.json([target.target for target in run.targets]),
        "queued": sum(target.queued for target in run.targets),
        "released_for_retry": sum(target.released for target in run.targets),
        "attempted": len(run.attempted_keys()),
        **{outcome: totals.get(outcome, 0) for outcome in RUN_OUTCOMES},
        "dagster/row_count": sum(count for _, _, count in by_target),
        "needs_follow_up_total": sum(
            count for _, outcome, count in by_target if outcome in ("rejected", "gave_up")
        ),
        "deliveries_by_target": dg.MetadataValue.md(
            markdown_table([{"target": t, "outcome": o, "deliveries": n} for t, o, n in by_target])
        ),
        "this_run_preview": dg.MetadataValue.md(markdown_table(preview)),
    }
    return metadata


def _summary_line(run: DeliveryRun) -> str:
    totals = run.totals()
    counts = ", ".join(f"{totals[outcome]} {outcome}" for outcome in RUN_OUTCOMES if totals[outcome])
    return f"Cancellation notices: {len(run.attempted_keys())} calls ({counts or 'nothing due'})"
