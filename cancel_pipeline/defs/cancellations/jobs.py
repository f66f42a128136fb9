"""The tables' own job: derive what has landed, on demand or after a catch-up."""

import dagster as dg

from cancel_pipeline.defs.cancellations.tables import cancellation_tables

cancellation_tables_job = dg.define_asset_job(
    name="cancellation_tables_job",
    selection=dg.AssetSelection.assets(cancellation_tables).downstream(),
    description=(
        "Derives the cancellation tables from every page landed since the last derivation, then sends the "
        "notices: what the automation sensor does after a landing, here on demand (`make run` runs it once "
        "after its feed runs). With nothing new landed it changes nothing."
    ),
)
