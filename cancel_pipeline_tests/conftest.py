"""Shared fixtures; each family lives in its own module and is imported here."""

import pytest

from cancel_pipeline_tests.demo_fixtures import demo_clock, demo_store, demo_store_server
from cancel_pipeline_tests.warehouse_fixtures import con

__all__ = ["con", "demo_clock", "demo_store", "demo_store_server", "rest_unless_a_test_says_otherwise"]


@pytest.fixture(autouse=True)
def rest_unless_a_test_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """`SHOPIFY_API=rest` unless a test sets it: the suite's pipeline tests were written for the REST path
    (its requests and page bodies), while GraphQL, the default, has its own tests (test_graphql_*)."""
    monkeypatch.setenv("SHOPIFY_API", "rest")
