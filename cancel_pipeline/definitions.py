"""The one Definitions object of cancel_pipeline.

Assets and asset checks are collected from their modules, so a new asset in `cancel_pipeline.assets` joins the
jobs (which select each raw asset and everything downstream of it), the schedules and the sensor by itself.
"""

import dagster as dg

from cancel_pipeline import assets, checks
from cancel_pipeline.jobs import JOBS
from cancel_pipeline.resources import build_resources
from cancel_pipeline.schedules import SCHEDULES
from cancel_pipeline.sensors import SENSORS

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=[
        *dg.load_asset_checks_from_package_module(assets),
        *dg.load_asset_checks_from_modules([checks]),
    ],
    jobs=list(JOBS),
    schedules=list(SCHEDULES),
    sensors=list(SENSORS),
    resources=build_resources(),
)
