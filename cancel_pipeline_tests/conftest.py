"""Shared fixtures; each family lives in its own module and is imported here."""

import pytest

from cancel_pipeline_tests.demo_fixtures import demo_clock, demo_store, demo_store_server
from cancel_pipeline_tests.warehouse_fixtures import con

__all__ = ["con", "demo_clock", "demo_store", "demo_store_server", "rest_for_served_demo_store"]


@pytest.fixture(autouse=True)
def rest_for_served_demo_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """`SHOPIFY_API=rest` unless a test sets it: the served demo store answers REST only so far, and a
    configured store reads through GraphQL by default."""
    monkeypatch.setenv("SHOPIFY_API", "rest")
