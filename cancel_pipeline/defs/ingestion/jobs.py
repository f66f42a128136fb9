"""The feeds' jobs: each raw asset together with everything downstream of it.

Selecting "the raw asset and its downstream" (rather than naming the tables) means the derived tables join
the jobs, and so the schedules and the sensor, as soon as they are defined.
"""

from __future__ import annotations

import dagster as dg

from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages

canceled_order_job = dg.define_asset_job(
    name="canceled_order_job",
    selection=dg.AssetSelection.assets(raw_canceled_order_pages).downstream(),
    description=(
        "The Canceled Order job: reads fully canceled orders (status=cancelled) for one UTC day (what is new "
        "in it, on a tick; the whole day otherwise), or a range of days as one run, and updates every table "
        "downstream."
    ),
)

canceled_items_job = dg.define_asset_job(
    name="canceled_items_job",
    selection=dg.AssetSelection.assets(raw_updated_order_pages).downstream(),
    description=(
        "The Canceled Items job: reads every order updated (status=any) in one UTC day (what is new in it, "
        "on a tick; the whole day otherwise), or a range of days as one run, so partial cancellations are "
        "seen, and updates every table downstream."
    ),
)
