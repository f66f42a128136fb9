"""The cancellation tables: derived in DuckDB, by set-based SQL, from every raw page not yet derived.

One multi-asset writes all five tables in one transaction, so they always agree with each other and a failed
run leaves every one as it was. The tables are not partitioned: their raw parents have different window
lengths, and each table is the merge of the whole history ("latest `updated_at` wins"), which is what makes
windows run in any order, or twice, converge to the same tables.
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from cancel_pipeline.defs.cancellations.columns import column_description
from cancel_pipeline.defs.conventions import CANCELLATIONS_GROUP, DUCKDB_WRITER_POOL, OWNERS
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.metadata import jsonable, markdown_table
from cancel_pipeline.defs.refresh.assets import raw_refreshed_order_pages
from cancel_pipeline.warehouse.derive import DeriveResult, derive_new_pages
from cancel_pipeline.warehouse.queries import duplicate_keys, new_rejects, reject_reason_counts
from cancel_pipeline.warehouse.schema import (
    KEY_COLUMNS,
    derived_table_schemas,
    ensure_schema,
    table_column_schema,
)

KINDS = {"duckdb", "sql"}
RAW_PARENTS = (raw_canceled_order_pages, raw_updated_order_pages, raw_refreshed_order_pages)
UNIQUE_KEY_TABLES = ("canceled_orders", "canceled_line_items", "orders")
REJECTS_CHECK = "order_rejects_no_new_rows"
PREVIEW_ROWS = 10

# The cancellation feed runs every 30 minutes (plus a settle delay), the updates feed hourly: a table older
# than two periods of its feed means runs are failing or stopped.
CANCELED_ORDERS_FRESHNESS = dg.FreshnessPolicy.time_window(
    warn_window=timedelta(minutes=45), fail_window=timedelta(minutes=90)
)
CANCELED_LINE_ITEMS_FRESHNESS = dg.FreshnessPolicy.time_window(
    warn_window=timedelta(minutes=75), fail_window=timedelta(hours=2, minutes=30)
)


DERIVE_AFTER_RAW = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
"""Derive whenever a raw parent lands new pages, however its run was launched (a UI backfill of a raw asset
alone, say). `eager()` itself never fires here: it waits for every parent partition since the first window,
and for `raw_refreshed_order_pages`, which may never run. A run that already includes the tables does not
trigger a second derivation (Dagster skips updates made by a run that targeted this asset too), and nothing
is requested while a raw run is still in progress."""


def _declared_schemas() -> dict[str, list[tuple[str, str]]]:
    # The tables' columns as the DDL declares them, so the UI shows them (described) before any run.
    with duckdb.connect(":memory:") as con:
        ensure_schema(con)
        return derived_table_schemas(con)


_DECLARED_SCHEMAS = _declared_schemas()


def _column_schema(table: str, schema: list[tuple[str, str]] | None = None) -> dg.TableSchema:
    """The table's columns and types with the data contract's description of each."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, data_type, description=column_description(table, name))
            for name, data_type in (_DECLARED_SCHEMAS[table] if schema is None else schema)
        ]
    )


def _spec(name: str, description: str, deps: Sequence[Any], **kwargs: Any) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        description=description,
        deps=deps,
        group_name=CANCELLATIONS_GROUP,
        kinds=KINDS,
        owners=OWNERS,
        metadata={"dagster/table_name": f"main.{name}", "dagster/column_schema": _column_schema(name)},
        automation_condition=DERIVE_AFTER_RAW,
        **kwargs,
    )


DERIVED_SPECS = (
    _spec(
        "order_versions",
        "Every distinct (order_id, updated_at) Shopify ever returned, typed, with the page it came from. A "
        "version replaced by a later one is kept and marked (superseded_at, superseded_by_updated_at).",
        RAW_PARENTS,
    ),
    _spec(
        "order_rejects",
        "Order objects that could not be typed (id not an integer, missing or unparseable timestamps or "
        "money, invalid line items), one row per object per fetched page, with the reason and the raw object. "
        "A reject never fails a run; an older good version of the order stays in the tables.",
        RAW_PARENTS,
    ),
    _spec(
        "canceled_orders",
        "One row per fully canceled order (cancelled_at set), from its latest seen version.",
        ["order_versions"],
        freshness_policy=CANCELED_ORDERS_FRESHNESS,
    ),
    _spec(
        "canceled_line_items",
        "One row per line item with canceled units: every line of a fully canceled order, else units in "
        "refund lines with restock_type 'cancel' plus units removed by an order edit. Returns and no_restock "
        "refunds are not cancellations.",
        ["order_versions"],
        freshness_policy=CANCELED_LINE_ITEMS_FRESHNESS,
    ),
    _spec(
        "orders",
        "One row per order (latest version) with its lifecycle status: canceled, completed, "
        "partially_fulfilled or created.",
        ["order_versions"],
    ),
)

CHECK_SPECS = (
    *(
        dg.AssetCheckSpec(
            f"{table}_key_is_unique",
            asset=table,
            blocking=True,
            description=f"Each ({', '.join(KEY_COLUMNS[table])}) appears once in {table}. Blocking: a "
            "duplicate stops everything downstream.",
        )
        for table in UNIQUE_KEY_TABLES
    ),
    dg.AssetCheckSpec(
        REJECTS_CHECK,
        asset="order_rejects",
        description="The latest derivation rejected no order object. On failure the metadata lists the "
        "reasons; the objects are in order_rejects.",
    ),
)


class DeriveConfig(dg.Config):
    """Run configuration of the derivation."""

    full_refresh: bool = False
    """Empty the derived tables and rebuild them from every raw page, instead of only the new ones."""


@dg.multi_asset(
    name="cancellation_tables",
    specs=DERIVED_SPECS,
    check_specs=CHECK_SPECS,
    pool=DUCKDB_WRITER_POOL,
    can_subset=False,
)
def cancellation_tables(
    context: dg.AssetExecutionContext, config: DeriveConfig, duckdb: DuckDBResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Fold every raw page landed since the last derivation into order_versions, order_rejects,
    canceled_orders, canceled_line_items and orders, in one DuckDB transaction."""
    with duckdb.get_connection() as con:
        result = derive_new_pages(con, now=datetime.now(UTC), full_refresh=config.full_refresh)
        schemas = {spec.key.path[-1]: table_column_schema(con, spec.key.path[-1]) for spec in DERIVED_SPECS}
        duplicates = {table: duplicate_keys(con, table) for table in UNIQUE_KEY_TABLES}
        rejects = new_rejects(con)
    context.log.info(
        f"Derived {result.pages_processed} pages ({result.orders_seen} orders): {result.new_versions} new "
        f"versions, {result.rejects_added} rejects; watermark {result.watermark_before} -> "
        f"{result.watermark_after}"
    )
    for spec in DERIVED_SPECS:
        table = spec.key.path[-1]
        yield dg.MaterializeResult(asset_key=spec.key, metadata=_table_metadata(table, result, schemas))
    for table, rows in duplicates.items():
        yield dg.AssetCheckResult(
            asset_key=table,
            check_name=f"{table}_key_is_unique",
            passed=not rows,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "duplicate_keys": len(rows),
                "examples": dg.MetadataValue.json([jsonable(row) for row in rows[:20]]),
            },
        )
    yield dg.AssetCheckResult(
        asset_key="order_rejects",
        check_name=REJECTS_CHECK,
        passed=not rejects,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "new_rejects": len(rejects),
            "reasons": dg.MetadataValue.json(reject_reason_counts(rejects)),
            "preview": dg.MetadataValue.md(markdown_table(rejects[:20])),
        },
    )


def _table_metadata(
    table: str, result: DeriveResult, schemas: dict[str, list[tuple[str, str]]]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": result.row_counts.get(table, 0),
        "dagster/column_schema": _column_schema(table, schemas[table]),
        "pages_processed": result.pages_processed,
        "full_refresh": result.full_refresh,
    }
    changes = result.table_changes.get(table)
    if changes is not None:
        metadata.update(inserted=changes.inserted, updated=changes.updated, deleted=changes.deleted)
    if table == "order_versions":
        metadata.update(new_versions=result.new_versions, orders_seen=result.orders_seen)
    elif table == "order_rejects":
        metadata.update(rejects_added=result.rejects_added, rejects_removed=result.rejects_removed)
    elif table == "canceled_orders":
        metadata["changed_rows_preview"] = dg.MetadataValue.md(markdown_table(result.canceled_orders_preview))
    elif table == "canceled_line_items":
        metadata["changed_rows_preview"] = dg.MetadataValue.md(
            markdown_table(result.canceled_line_items_preview)
        )
    return metadata
