"""The time windows of the raw assets: half-open `[start, end)` ranges of `updated_at`, in UTC.

Both definitions carry `end_offset=1`, so the window in progress already exists as a partition: the
cancellation sensor materializes it as soon as a cancellation shows up, and the schedule re-reads it once it
has closed. A run of a window that has not closed yet reads up to "now" (see `requested_bounds`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from cancel_pipeline.settings import SETTINGS, PipelineSettings

PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"
"""Keys look like `2026-03-02-01:30`: the window's start."""

RANGE_KEY_SEPARATOR = "..."
"""A range run lands its pages under `first...last`, Dagster's own notation for partition ranges."""


def window_partitions(
    minutes: int, settings: PipelineSettings = SETTINGS
) -> dg.TimeWindowPartitionsDefinition:
    """Windows of `minutes` (a divisor of 60) starting at the first window of `settings`, the current one included."""
    cron = "0 * * * *" if minutes == 60 else f"*/{minutes} * * * *"
    return dg.TimeWindowPartitionsDefinition(
        start=settings.first_window_start.strftime(PARTITION_KEY_FORMAT),
        fmt=PARTITION_KEY_FORMAT,
        cron_schedule=cron,
        timezone="UTC",
        end_offset=1,
    )


CANCELED_ORDER_WINDOWS = window_partitions(SETTINGS.canceled_window_minutes)
"""Windows of `raw_canceled_order_pages` (30 minutes by default)."""

UPDATED_ORDER_WINDOWS = window_partitions(SETTINGS.updated_window_minutes)
"""Windows of `raw_updated_order_pages` (hourly by default)."""


def range_partition_key(partition_keys: list[str]) -> str:
    """The key pages of a run are landed under: the window's own key, or `first...last` for a range run."""
    if len(partition_keys) == 1:
        return partition_keys[0]
    return f"{partition_keys[0]}{RANGE_KEY_SEPARATOR}{partition_keys[-1]}"


def requested_bounds(
    window_start: datetime, window_end: datetime, *, now: datetime, overlap: timedelta
) -> tuple[datetime, datetime]:
    """The `updated_at_min`/`updated_at_max` sent to Shopify for the window(s) `[window_start, window_end)`.

    The minimum reaches back by `overlap`, so an order updated just before the window but indexed by Shopify
    only after the previous window was read is still picked up. The maximum is the window's end, or `now`
    for the window in progress: asking for the future would only make the landed bounds lie.
    """
    return window_start - overlap, min(window_end, now)
