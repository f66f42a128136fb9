"""Dagster definitions, grouped by domain; loaded by `cancel_pipeline.definitions`."""
