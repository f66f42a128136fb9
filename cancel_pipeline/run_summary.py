"""A glanceable summary of the warehouse: what `make run` prints when it finishes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from cancel_pipeline.outbox.deliveries import deliveries_table_exists, outcome_counts
from cancel_pipeline.warehouse.queries import stuck_orders


@dataclass(frozen=True)
class WarehouseSummary:
    """Row counts of the cancellation tables and what a person looks for first."""

    orders: int
    order_versions: int
    canceled_orders: int
    canceled_by_reason: list[tuple[str, int]]
    canceled_line_items: int
    partially_canceled_line_items: int
    partially_canceled_units: int
    rejects: int
    """Distinct rejected order objects: one object rejected on several pages (by both feeds, or a window
    read twice) counts once."""
    reject_rows: int
    """Rows of `order_rejects`: one per rejected object per fetched page, so at least `rejects`."""
    rejects_by_reason: list[tuple[str, int]]
    """(reason, distinct objects) per reject reason."""
    stuck_orders: int
    raw_pages: int
    deliveries: list[tuple[str, str, int]] = field(default_factory=list)
    """(target, outcome, orders) of the cancellation outbox; empty when no target was ever configured."""


def summarize(
    con: duckdb.DuckDBPyConnection, now: datetime, stuck_thresholds: Mapping[str, timedelta]
) -> WarehouseSummary:
    """Read the summary from a warehouse whose tables exist (see `schema.ensure_schema`)."""

    def scalar(sql: str) -> int:
        return int(con.execute(sql).fetchone()[0] or 0)

    def grouped(sql: str) -> list[tuple[str, int]]:
        return [(str(key), int(count)) for key, count in con.execute(sql).fetchall()]

    return WarehouseSummary(
        orders=scalar("select count(*) from orders"),
        order_versions=scalar("select count(*) from order_versions"),
        canceled_orders=scalar("select count(*) from canceled_orders"),
        canceled_by_reason=grouped(
            "select coalesce(cancel_reason, '(none)'), count(*) from canceled_orders group by 1 order by 2 desc, 1"
        ),
        canceled_line_items=scalar("select count(*) from canceled_line_items"),
        partially_canceled_line_items=scalar(
            "select count(*) from canceled_line_items where not order_canceled"
        ),
        partially_canceled_units=scalar(
            "select sum(canceled_quantity) from canceled_line_items where not order_canceled"
        ),
        # An object is rejected again each time a page holding it is fetched; count each object once.
        rejects=scalar("select count(distinct (reason, raw_order::varchar)) from order_rejects"),
        reject_rows=scalar("select count(*) from order_rejects"),
        rejects_by_reason=grouped(
            "select reason, count(distinct raw_order::varchar) from order_rejects group by 1 order by 2 desc, 1"
        ),
        stuck_orders=len(stuck_orders(con, now, stuck_thresholds)),
        raw_pages=scalar("select count(*) from raw_order_pages"),
        deliveries=outcome_counts(con) if deliveries_table_exists(con) else [],
    )
