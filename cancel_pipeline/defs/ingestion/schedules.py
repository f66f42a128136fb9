"""Schedules: each feed's ticks (every 30 minutes for cancellations, hourly for updates), each reading what
is new in its day, plus a daily reconciliation of each that re-reads the previous day whole.

All are STOPPED when first deployed; switch them on in the UI (Automation, or the job's page).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from cancel_pipeline.defs.conventions import READ_NEW, READ_TAG, READ_WHOLE
from cancel_pipeline.defs.ingestion.jobs import canceled_items_job, canceled_order_job
from cancel_pipeline.defs.ingestion.partitions import CANCELED_ORDER_WINDOWS, UPDATED_ORDER_WINDOWS
from cancel_pipeline.settings import SETTINGS, PipelineSettings


def day_key_before(partitions_def: dg.TimeWindowPartitionsDefinition, moment: datetime) -> str | None:
    """Key of the day holding the instant just before `moment` (so at midnight, the day that just closed);
    None before the first day."""
    probe = moment - timedelta(microseconds=1)
    if probe < partitions_def.start:
        return None
    return partitions_def.get_partition_key_for_timestamp(probe.timestamp())


def tick_cron(minutes: int, settle_delay: timedelta) -> str:
    """Cron of ticks every `minutes` (a divisor of 60), `settle_delay` after the boundaries (e.g. `5,35 * * * *`)."""
    settle = int(settle_delay.total_seconds() // 60)
    ticks = sorted({(start + settle) % 60 for start in range(0, 60, minutes)})
    return f"{','.join(str(t) for t in ticks)} * * * *"


def build_tick_schedule(
    *,
    name: str,
    job: Any,  # what `define_asset_job` returns: Dagster exports no public name for its type
    partitions_def: dg.TimeWindowPartitionsDefinition,
    minutes: int,
    settings: PipelineSettings,
    what: str,
) -> dg.ScheduleDefinition:
    """A schedule running `job` every `minutes` for the day in progress, reading only what is new in it."""
    settle_minutes = int(settings.settle_delay.total_seconds() // 60)
    overlap_minutes = int(settings.overlap.total_seconds() // 60)

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=tick_cron(minutes, settings.settle_delay),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Every {minutes} minutes ({settle_minutes} minutes past the boundary): reads {what} updated "
            f"since the last landed page of the day's partition (less {overlap_minutes} minutes of overlap); "
            "the automation sensor then derives the tables from them. The tick at 00:05 UTC finishes the day "
            "that just closed."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        """One tick: the day holding the last boundary, read from where its pages stop."""
        settled = context.scheduled_execution_time - settings.settle_delay
        key = day_key_before(partitions_def, settled)
        if key is None:
            return dg.SkipReason(f"The first day starts after {settled.isoformat()}")
        return dg.RunRequest(
            run_key=f"{key}@{settled.isoformat()}", partition_key=key, tags={READ_TAG: READ_NEW}
        )

    return _schedule


def build_reconciliation_schedule(
    *,
    name: str,
    job: Any,  # what `define_asset_job` returns: Dagster exports no public name for its type
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: PipelineSettings,
    what: str,
) -> dg.ScheduleDefinition:
    """Daily: the previous UTC day of `job`'s raw asset, re-read whole."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=f"{settings.reconciliation_minute} {settings.reconciliation_hour} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Daily reconciliation at {settings.reconciliation_hour:02d}:{settings.reconciliation_minute:02d} "
            f"UTC: re-reads {what} over the whole previous UTC day, superseding the ticks' pages of that day "
            "(they are kept), to pick up what the ticks missed; the automation sensor then derives the tables."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        """The previous day's partition, re-read whole."""
        midnight = context.scheduled_execution_time.replace(hour=0, minute=0, second=0, microsecond=0)
        key = day_key_before(partitions_def, midnight)
        if key is None:
            return dg.SkipReason("The previous day is before the first day")
        return dg.RunRequest(run_key=f"reconcile-{key}", partition_key=key, tags={READ_TAG: READ_WHOLE})

    return _schedule


canceled_order_schedule = build_tick_schedule(
    name="canceled_order_schedule",
    job=canceled_order_job,
    partitions_def=CANCELED_ORDER_WINDOWS,
    minutes=SETTINGS.canceled_window_minutes,
    settings=SETTINGS,
    what="fully canceled orders",
)

canceled_items_schedule = build_tick_schedule(
    name="canceled_items_schedule",
    job=canceled_items_job,
    partitions_def=UPDATED_ORDER_WINDOWS,
    minutes=SETTINGS.updated_window_minutes,
    settings=SETTINGS,
    what="every order (partial cancellations included)",
)

canceled_order_reconciliation_schedule = build_reconciliation_schedule(
    name="canceled_order_reconciliation_schedule",
    job=canceled_order_job,
    partitions_def=CANCELED_ORDER_WINDOWS,
    settings=SETTINGS,
    what="fully canceled orders",
)

canceled_items_reconciliation_schedule = build_reconciliation_schedule(
    name="canceled_items_reconciliation_schedule",
    job=canceled_items_job,
    partitions_def=UPDATED_ORDER_WINDOWS,
    settings=SETTINGS,
    what="every updated order",
)
