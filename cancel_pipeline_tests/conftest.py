"""Shared fixtures; each family lives in its own module and is imported here."""

from cancel_pipeline_tests.demo_fixtures import demo_clock, demo_store, demo_store_server
from cancel_pipeline_tests.warehouse_fixtures import con

__all__ = ["con", "demo_clock", "demo_store", "demo_store_server"]
