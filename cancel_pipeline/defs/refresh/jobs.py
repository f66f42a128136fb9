"""The refresh job: re-import orders by id."""

import dagster as dg

from cancel_pipeline.defs.refresh.assets import raw_refreshed_order_pages

refresh_orders_job = dg.define_asset_job(
    name="refresh_orders_job",
    selection=dg.AssetSelection.assets(raw_refreshed_order_pages).downstream(),
    description=(
        "Re-import orders by id (the OMS 'refresh order'): re-fetches the configured `order_ids`, or with "
        "`stuck: true` every order the orders_stuck_in_created check flags, in batches of 250, and updates "
        "every table. The versions they replace stay in order_versions, marked superseded."
    ),
)
