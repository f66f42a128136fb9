"""The one Definitions object of cancel_pipeline: everything under `cancel_pipeline/defs/`, by domain.

`defs/ingestion` (raw assets, partitions, jobs, schedules, sensor), `defs/cancellations` (the derived tables,
their checks, their job and the automation sensor), `defs/refresh` (re-import by id), `defs/outbox` (notices
to downstream systems) and `defs/runs` (runs whose process died) are found by Dagster's
`load_from_defs_folder`; a new asset or job in one of them joins the project by itself.

A configuration error at load (a `CANCEL_PIPELINE_*` or `SHOPIFY_*` variable, the targets file) stops the load
with one `error:` line naming what is at fault: its message is all a person needs, Dagster's loader traceback
would bury it.
"""

import sys
from pathlib import Path

import dagster as dg

from cancel_pipeline.outbox.targets import TargetsError
from cancel_pipeline.shopify.resource import ShopifySettingsError


def _stop(error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None


try:
    # The settings are read once, here, before Dagster walks the definitions that use them; the module
    # cannot be imported for its SettingsError class when reading them is what fails, hence ValueError.
    from cancel_pipeline.settings import SETTINGS  # noqa: F401
except ValueError as error:
    _stop(error)


def _configuration_error(error: BaseException | None) -> Exception | None:
    # Dagster's loader wraps what a definition raised (a ComponentTreeException); the cause is below it.
    while error is not None:
        if isinstance(error, (ShopifySettingsError, TargetsError)):
            return error
        error = error.__cause__ or error.__context__
    return None


try:
    defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
except Exception as error:
    cause = _configuration_error(error)
    if cause is None:
        raise
    _stop(cause)
