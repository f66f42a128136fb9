"""The automation sensor: derived tables and notices follow every raw landing, however it was launched."""

import dagster as dg

from cancel_pipeline.defs.cancellations.tables import cancellation_tables
from cancel_pipeline.defs.outbox.notices import cancellation_notices

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.assets(cancellation_tables, cancellation_notices),
    # Dagster's own automation sensor ships stopped; without this one a UI backfill of a raw asset alone
    # would leave the tables as they were until the next scheduled run.
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Every feed run is followed by this sensor's run of the tables, so its tick is part of a backfill's and
    # a scheduled tick's latency: half Dagster's default of 30 s. The daemon looks every 5 s.
    minimum_interval_seconds=15,
    description=(
        "Derives the cancellation tables (then sends the notices) after any raw asset lands pages that no "
        "run including the tables has derived yet: every run of a feed job (a tick, a reconciliation, a "
        "backfill) or of a raw asset alone. Runs of the cancellation sensor's fast-path job already include "
        "the tables and trigger nothing more."
    ),
)
