"""Jobs: each raw asset together with everything downstream of it.

Selecting "the raw asset and its downstream" (rather than naming the tables) means the derived tables join
the jobs, and so the schedules and the sensor, as soon as they are defined.
"""

from __future__ import annotations

import dagster as dg

from cancel_pipeline.assets.raw import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.assets.refresh import raw_refreshed_order_pages

canceled_order_job = dg.define_asset_job(
    name="canceled_order_job",
    selection=dg.AssetSelection.assets(raw_canceled_order_pages).downstream(),
    description=(
        "The Canceled Order job: reads fully canceled orders (status=cancelled) for one 30-minute window, or a "
        "range of windows as one run, and updates every table downstream."
    ),
)

canceled_items_job = dg.define_asset_job(
    name="canceled_items_job",
    selection=dg.AssetSelection.assets(raw_updated_order_pages).downstream(),
    description=(
        "The Canceled Items job: reads every order updated (status=any) in one hourly window, or a range of "
        "windows as one run, so partial cancellations are seen, and updates every table downstream."
    ),
)

refresh_orders = dg.define_asset_job(
    name="refresh_orders",
    selection=dg.AssetSelection.assets(raw_refreshed_order_pages).downstream(),
    description=(
        "Re-import orders by id (the OMS 'refresh order'): re-fetches the configured `order_ids`, or with "
        "`stuck: true` every order the orders_stuck_in_created check flags, in batches of 250, and updates "
        "every table. The versions they replace stay in order_versions, marked superseded."
    ),
)

retry_flagged_deliveries_job = dg.define_asset_job(
    name="retry_flagged_deliveries",
    selection=dg.AssetSelection.assets("cancellation_notices"),
    config={"ops": {"cancellation_notices": {"config": {"retry_flagged": True}}}},
    description=(
        "On demand: retries every cancellation delivery flagged for follow-up (rejected, or given up after "
        "the retry cap) once, with the deliveries that are due anyway, then re-evaluates the follow-up check."
    ),
)

RAW_ASSET_JOBS = (canceled_order_job, canceled_items_job)
JOBS = (*RAW_ASSET_JOBS, refresh_orders, retry_flagged_deliveries_job)
