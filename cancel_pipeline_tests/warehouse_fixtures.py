"""Fixtures for tests of the warehouse SQL: a real DuckDB file with the schema, one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from cancel_pipeline_tests.order_builders import open_test_warehouse


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a new warehouse file under the test's temporary folder."""
    connection = open_test_warehouse(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()
