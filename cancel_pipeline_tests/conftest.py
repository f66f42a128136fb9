"""Shared fixtures; each family lives in its own module and is imported here."""

from cancel_pipeline_tests.demo_fixtures import demo_clock, demo_store, demo_store_server

__all__ = ["demo_clock", "demo_store", "demo_store_server"]
