"""How every run of the project executes its steps: one after another, in the run's own process."""

from __future__ import annotations

import dagster as dg


@dg.definitions
def execution() -> dg.Definitions:
    """The in-process executor for every job, the UI's asset runs and backfills included.

    Every step that writes waits for the one slot of the `duckdb_writer` pool, so steps of a run never run in
    parallel anyway; Dagster's default executor would start a process per step (each loading the code) for
    nothing. Pools, retries and run termination work the same in the run's process.
    """
    return dg.Definitions(executor=dg.in_process_executor)
