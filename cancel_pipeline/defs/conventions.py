"""Names every definition shares: the writers' pool, owners, asset groups and Dagster's range-run tags."""

DUCKDB_WRITER_POOL = "duckdb_writer"
"""Concurrency pool of every step that writes the DuckDB file (its limit is set in `dagster.yaml`)."""

OWNERS = ["team:data-engineering"]

RAW_GROUP = "raw"
CANCELLATIONS_GROUP = "cancellations"
OUTBOX_GROUP = "outbox"

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
"""The tags that make one run cover a range of partitions (a single-run backfill)."""

READ_TAG = "cancel_pipeline/read"
"""Run tag saying how a raw run reads its day: `new` (only what is new since the day's last landed page,
plus the overlap: the schedules' ticks and the sensor) or, when absent, `whole` (the day re-read whole,
superseding its earlier pages)."""
READ_NEW = "new"
READ_WHOLE = "whole"
