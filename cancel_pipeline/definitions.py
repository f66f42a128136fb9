"""The one Definitions object of cancel_pipeline."""

import dagster as dg

defs = dg.Definitions()
