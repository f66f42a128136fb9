"""The feeds' jobs, and the cancellation sensor's fast-path job.

A feed job holds its raw asset alone: a run of a range of days then costs Dagster two events a day (a planned
event and a materialization), where a job holding the unpartitioned tables as well is made to plan each of
them once per day of the range too. The tables follow every landing through the automation sensor, once per
run however many days it read. The sensor's job keeps the tables in the same run, since that run is a single
day and is the one whose latency a user waits on.
"""

from __future__ import annotations

import dagster as dg

from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages

canceled_order_job = dg.define_asset_job(
    name="canceled_order_job",
    selection=dg.AssetSelection.assets(raw_canceled_order_pages),
    description=(
        "The Canceled Order job: lands the pages of fully canceled orders (status=cancelled) for one UTC day "
        "(what is new in it, on a tick; the whole day otherwise), or a range of days as one run. The "
        "automation sensor derives the tables from them right after."
    ),
)

canceled_items_job = dg.define_asset_job(
    name="canceled_items_job",
    selection=dg.AssetSelection.assets(raw_updated_order_pages),
    description=(
        "The Canceled Items job: lands the pages of every order updated (status=any) in one UTC day (what is "
        "new in it, on a tick; the whole day otherwise), or a range of days as one run, so partial "
        "cancellations are seen. The automation sensor derives the tables from them right after."
    ),
)

canceled_order_fast_path_job = dg.define_asset_job(
    name="canceled_order_fast_path_job",
    selection=dg.AssetSelection.assets(raw_canceled_order_pages).downstream(),
    description=(
        "The cancellation sensor's job: lands what is new in the day in progress of fully canceled orders "
        "and derives every table downstream in the same run, so a new cancellation reaches the tables "
        "without waiting for the automation sensor. Backfill through canceled_order_job instead."
    ),
)
