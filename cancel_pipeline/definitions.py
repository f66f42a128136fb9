"""The one Definitions object of cancel_pipeline: everything under `cancel_pipeline/defs/`, by domain.

`defs/ingestion` (raw assets, partitions, jobs, schedules, sensor), `defs/cancellations` (the derived tables
and their checks), `defs/refresh` (re-import by id), `defs/outbox` (notices to downstream systems) and
`defs/runs` (runs whose process died) are found by Dagster's `load_from_defs_folder`; a new asset or job in
one of them joins the project by itself.
"""

import sys
from pathlib import Path

import dagster as dg

try:
    # The settings are read once, here, before Dagster walks the definitions that use them.
    from cancel_pipeline.settings import SETTINGS  # noqa: F401
except ValueError as error:  # a SettingsError: the message names the variable at fault
    # One line, not a traceback through Dagster's loader: the message is all a person needs.
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
