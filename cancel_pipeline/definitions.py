"""The one Definitions object of cancel_pipeline."""

import dagster as dg

from cancel_pipeline import assets
from cancel_pipeline.jobs import RAW_ASSET_JOBS
from cancel_pipeline.resources import build_resources
from cancel_pipeline.schedules import SCHEDULES
from cancel_pipeline.sensors import SENSORS

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=list(RAW_ASSET_JOBS),
    schedules=list(SCHEDULES),
    sensors=list(SENSORS),
    resources=build_resources(),
)
