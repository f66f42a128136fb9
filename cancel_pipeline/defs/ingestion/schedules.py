"""Schedules: each raw job once per window, a settle delay after the window closes, plus a daily reconciliation
of each.

All are STOPPED when first deployed; switch them on in the UI (Automation, or the job's page).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.jobs import canceled_items_job, canceled_order_job
from cancel_pipeline.defs.ingestion.partitions import CANCELED_ORDER_WINDOWS, UPDATED_ORDER_WINDOWS
from cancel_pipeline.settings import SETTINGS, PipelineSettings


def window_length(partitions_def: dg.TimeWindowPartitionsDefinition) -> timedelta:
    """The length of every window of `partitions_def` (they tile the hour evenly)."""
    first = partitions_def.time_window_for_partition_key(partitions_def.start.strftime(partitions_def.fmt))
    return first.end - first.start


def last_closed_window_key(partitions_def: dg.TimeWindowPartitionsDefinition, moment: datetime) -> str | None:
    """Key of the latest window whose end is at or before `moment`; None before the first window closes."""
    # The window holding `moment - length` is the last to end at or before `moment`.
    probe = moment - window_length(partitions_def)
    if probe < partitions_def.start:
        return None
    return partitions_def.get_partition_key_for_timestamp(probe.timestamp())


def window_cron(minutes: int, settle_delay: timedelta) -> str:
    """Cron of ticks `settle_delay` after each boundary of `minutes`-long windows (e.g. `5,35 * * * *`)."""
    settle = int(settle_delay.total_seconds() // 60)
    ticks = sorted({(start + settle) % 60 for start in range(0, 60, minutes)})
    return f"{','.join(str(t) for t in ticks)} * * * *"


def build_window_schedule(
    *,
    name: str,
    job: Any,  # what `define_asset_job` returns: Dagster exports no public name for its type
    partitions_def: dg.TimeWindowPartitionsDefinition,
    minutes: int,
    settings: PipelineSettings,
    what: str,
) -> dg.ScheduleDefinition:
    """A schedule running `job` for each window once it has closed and settled."""
    settle_minutes = int(settings.settle_delay.total_seconds() // 60)

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=window_cron(minutes, settings.settle_delay),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Every {minutes} minutes, {settle_minutes} minutes after a window closes: reads {what} updated "
            f"in that window (from {int(settings.overlap.total_seconds() // 60)} minutes before its start) and "
            f"updates every table downstream. A tick at 02:05 runs the window that closed at 02:00."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        settled = context.scheduled_execution_time - settings.settle_delay
        key = last_closed_window_key(partitions_def, settled)
        if key is None:
            return dg.SkipReason(f"No window has closed before {settled.isoformat()} yet")
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


def previous_day_range(
    partitions_def: dg.TimeWindowPartitionsDefinition, moment: datetime
) -> tuple[str, str] | None:
    """First and last window keys of the UTC day before `moment` (from the first window on); None if none."""
    day_end = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    day_start = max(day_end - timedelta(days=1), partitions_def.start)
    last = last_closed_window_key(partitions_def, day_end)
    if last is None or day_start >= day_end:
        return None
    return partitions_def.get_partition_key_for_timestamp(day_start.timestamp()), last


def build_reconciliation_schedule(
    *,
    name: str,
    job: Any,  # what `define_asset_job` returns: Dagster exports no public name for its type
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: PipelineSettings,
    what: str,
) -> dg.ScheduleDefinition:
    """Daily: the previous UTC day's windows of `job`'s raw asset as one range run."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=f"{settings.reconciliation_minute} {settings.reconciliation_hour} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Daily reconciliation at {settings.reconciliation_hour:02d}:{settings.reconciliation_minute:02d} "
            f"UTC: re-reads {what} over every window of the previous UTC day, as one range run, and updates "
            "every table downstream, to pick up what the per-window runs missed."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        bounds = previous_day_range(partitions_def, context.scheduled_execution_time)
        if bounds is None:
            return dg.SkipReason("The previous day has no window (it is before the first window)")
        first, last = bounds
        return dg.RunRequest(run_key=f"{first}...{last}", tags={RANGE_START_TAG: first, RANGE_END_TAG: last})

    return _schedule


canceled_order_schedule = build_window_schedule(
    name="canceled_order_schedule",
    job=canceled_order_job,
    partitions_def=CANCELED_ORDER_WINDOWS,
    minutes=SETTINGS.canceled_window_minutes,
    settings=SETTINGS,
    what="fully canceled orders",
)

canceled_items_schedule = build_window_schedule(
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
