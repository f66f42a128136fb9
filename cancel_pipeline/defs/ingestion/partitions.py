"""The partitions of the raw assets: UTC days, half-open `[start, end)` ranges of `updated_at`.

Why days: Dagster's stock storage spends tens of milliseconds of bookkeeping per partition of a run, so a
year of 30-minute and hourly windows (26,280 of them) cost 20-35 minutes before a page was read; a year
of days is 730 for both feeds.
Why UTC: Shopify's filters are UTC instants, every UTC day is 24 hours long (no daylight-saving days of 23
or 25), and the partitions do not depend on a setting of the shop that can change.

The feeds keep their own cadence inside a day: a scheduled tick (or a sensor run) reads only what is new
since the last landed page of its day, plus the overlap (`incremental_bounds`); any other run of a day (a
backfill, the daily reconciliation, a materialization from the UI) re-reads it whole and supersedes its
earlier pages. `end_offset=1` makes today a partition while it is in progress.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from cancel_pipeline.settings import SETTINGS, PipelineSettings

PARTITION_KEY_FORMAT = "%Y-%m-%d"
"""Keys look like `2026-03-02`: the day (UTC)."""

RANGE_KEY_SEPARATOR = "..."
"""A range run lands its pages under `first...last`, Dagster's own notation for partition ranges."""


def day_partitions(settings: PipelineSettings = SETTINGS) -> dg.TimeWindowPartitionsDefinition:
    """UTC days from the day of `settings.first_window_start` on, today (in progress) included."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.first_window_start.strftime(PARTITION_KEY_FORMAT),
        timezone="UTC",
        end_offset=1,
    )


RAW_DAYS = day_partitions()
"""The partitions of both raw assets."""

CANCELED_ORDER_WINDOWS = RAW_DAYS
"""Partitions of `raw_canceled_order_pages` (UTC days)."""

UPDATED_ORDER_WINDOWS = RAW_DAYS
"""Partitions of `raw_updated_order_pages` (UTC days)."""


def range_partition_key(partition_keys: list[str]) -> str:
    """The key pages of a run are landed under: the day's own key, or `first...last` for a range run."""
    if len(partition_keys) == 1:
        return partition_keys[0]
    return f"{partition_keys[0]}{RANGE_KEY_SEPARATOR}{partition_keys[-1]}"


def requested_bounds(
    window_start: datetime, window_end: datetime, *, now: datetime, overlap: timedelta
) -> tuple[datetime, datetime]:
    """The `updated_at_min`/`updated_at_max` of a full read of the day(s) `[window_start, window_end)`.

    The minimum reaches back by `overlap`, so an order updated just before the window but indexed by Shopify
    only after the previous window was read is still picked up. The maximum is the window's end, or `now`
    for the day in progress: asking for the future would only make the landed bounds lie.
    """
    return window_start - overlap, min(window_end, now)


def incremental_bounds(
    window_start: datetime,
    window_end: datetime,
    covered_until: datetime | None,
    *,
    now: datetime,
    overlap: timedelta,
) -> tuple[datetime, datetime]:
    """The bounds of a tick of the day `[window_start, window_end)` whose current pages reach
    `covered_until` (None: none landed yet): from there less the overlap, to the day's end or `now`."""
    full_min, full_max = requested_bounds(window_start, window_end, now=now, overlap=overlap)
    if covered_until is None:
        return full_min, full_max
    return max(full_min, min(covered_until, full_max) - overlap), full_max
