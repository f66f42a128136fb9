"""The retry job of the outbox."""

import dagster as dg

retry_flagged_deliveries_job = dg.define_asset_job(
    name="retry_flagged_deliveries_job",
    selection=dg.AssetSelection.assets("cancellation_notices"),
    config={"ops": {"cancellation_notices": {"config": {"retry_flagged": True}}}},
    description=(
        "On demand: retries every cancellation delivery flagged for follow-up (rejected, or given up after "
        "the retry cap) once, with the deliveries that are due anyway, then re-evaluates the follow-up check."
    ),
)
