"""The one Definitions object of cancel_pipeline: everything under `cancel_pipeline/defs/`, by domain.

`defs/ingestion` (raw assets, partitions, jobs, schedules, sensor), `defs/cancellations` (the derived tables
and their checks), `defs/refresh` (re-import by id) and `defs/outbox` (notices to downstream systems) are
found by Dagster's `load_from_defs_folder`; a new asset or job in one of them joins the project by itself.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
