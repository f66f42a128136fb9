"""The scenario the end-to-end tests share: the store's frozen time, the backfilled span, the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from cancel_pipeline_testkit.dagster_dev import PROJECT_ROOT, DagsterDevServer
from cancel_pipeline_testkit.graphql import Backfill

STORE_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
"""The demo store's frozen clock: everything it serves happened before this instant."""

FIRST_WINDOW = STORE_NOW - timedelta(days=1)
"""The pipeline's first day (2026-11-19) for the test server (keeps the partition lists in the UI short)."""

BACKFILL_WINDOW = dg.TimeWindow(datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC))
"""The span of `updated_at` the backfill covers: one day (UTC), the day before the store's now."""

BACKFILL_ROOT = "raw_canceled_order_pages"
"""The backfill selects this asset and everything downstream of it."""

BACKFILL_TIMEOUT_S = 240.0
SCREENSHOTS = PROJECT_ROOT / "screenshots"


@dataclass(frozen=True)
class CompletedBackfill:
    """A finished backfill and what it was asked to do."""

    backfill: Backfill
    ranges: dict[str, tuple[str, str] | None]  # asset key -> (first, last) partition, None if unpartitioned
    server: DagsterDevServer
