"""What the UI shows of the derived tables and their checks, and what `make run`'s summary counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from cancel_pipeline.catch_up import render_report
from cancel_pipeline.defs.cancellations.checks import orders_stuck_in_created
from cancel_pipeline.defs.cancellations.tables import DERIVED_SPECS, cancellation_tables
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.run_summary import summarize
from cancel_pipeline.stuck_rule import DEFAULT_STUCK_THRESHOLDS
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.schema import derived_table_schemas, ensure_schema
from cancel_pipeline_tests.order_builders import land_page, order, utc

pytestmark = pytest.mark.timeout(60)


def _declared_columns() -> dict[str, list[str]]:
    with warehouse_connection(":memory:") as con:
        ensure_schema(con)
        return {table: [name for name, _ in columns] for table, columns in derived_table_schemas(con).items()}


def _described(schema: dg.TableSchema) -> dict[str, str | None]:
    return {column.name: column.description for column in schema.columns}


def test_every_column_of_every_derived_table_is_described_in_the_definitions() -> None:
    declared = _declared_columns()
    assert {spec.key.path[-1] for spec in DERIVED_SPECS} == set(declared)
    for spec in DERIVED_SPECS:
        table = spec.key.path[-1]
        described = _described(spec.metadata["dagster/column_schema"])
        assert list(described) == declared[table]
        assert all(described.values()), (
            f"{table}: no description for {[c for c, d in described.items() if not d]}"
        )


def test_materializations_carry_the_described_columns(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [cancellation_tables],
            resources={"duckdb": WarehouseResource(database=str(database))},
            instance=instance,
        )
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == len(DERIVED_SPECS)
    for event in events:
        described = _described(event.materialization.metadata["dagster/column_schema"].value)
        assert described and all(described.values())
    by_table = {
        e.asset_key.path[-1]: e.materialization.metadata["dagster/column_schema"].value for e in events
    }
    assert _described(by_table["canceled_line_items"])["order_canceled"].startswith(
        "True when the whole order"
    )


def test_the_stuck_list_says_when_it_is_cut(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    created = datetime.now(UTC) - timedelta(days=3)
    with warehouse_connection(database) as con:
        ensure_schema(con)
        con.execute(
            """
            insert into orders (order_id, created_at, updated_at, source_name, status, test, last_fetched_at)
            select i, $created + to_minutes(i), $created + to_minutes(i), 'web', 'created', false, $created
            from range(1, 56) t(i)
            """,
            {"created": created},
        )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [cancellation_tables, orders_stuck_in_created],
            selection=dg.AssetSelection.checks(orders_stuck_in_created),
            resources={"duckdb": WarehouseResource(database=str(database))},
            instance=instance,
        )
    [evaluation] = result.get_asset_check_evaluations()
    metadata: dict[str, Any] = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["stuck_count"] == 55
    assert metadata["listed"] == "the first 50 of 55, oldest first"


def test_the_summary_tells_rejected_objects_from_reject_rows(tmp_path: Path) -> None:
    bad = {**order(7, utc(2025, 3, 3, 10)), "created_at": "yesterday"}
    with warehouse_connection(tmp_path / "warehouse.duckdb") as con:
        ensure_schema(con)
        # The same object, rejected once by each feed.
        land_page(con, [bad], asset="raw_updated_order_pages")
        land_page(con, [bad], asset="raw_canceled_order_pages")
        derive_new_pages(con, now=utc(2025, 3, 3, 12))
        assert con.execute("select count(*) from order_rejects").fetchone() == (2,)
        summary = summarize(con, utc(2025, 3, 3, 12), DEFAULT_STUCK_THRESHOLDS)
    assert (summary.rejects, summary.reject_rows) == (1, 2)
    report = render_report([], summary, store="demo", duckdb_path="w.duckdb", elapsed_s=1.0)
    assert "rejected order objects (distinct)" in report and "order_rejects rows" in report
