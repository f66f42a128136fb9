"""The SQL behind the asset checks: orders stuck in 'created', duplicate keys, and new rejects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from cancel_pipeline.stuck_rule import DEFAULT_OTHER_THRESHOLD, DEFAULT_STUCK_THRESHOLDS, OTHER_SOURCES
from cancel_pipeline.warehouse.schema import KEY_COLUMNS, WATERMARK_SOURCE


@dataclass(frozen=True)
class StuckOrder:
    """An order still in status 'created' past its source's threshold."""

    order_id: int
    order_name: str | None
    source_name: str | None
    created_at: datetime
    age: timedelta
    last_fetched_at: datetime


def stuck_orders(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    thresholds: Mapping[str, timedelta] = DEFAULT_STUCK_THRESHOLDS,
    *,
    limit: int | None = None,
) -> list[StuckOrder]:
    """Non-test orders in 'created' whose age at `now` is strictly greater than their source's threshold.

    `thresholds` maps `source_name` to a threshold, as `PipelineSettings.stuck_thresholds` does; its key
    `other` (default 24 hours) applies to any other source, or none. Oldest first; `limit` caps the rows.
    """
    other_threshold = thresholds.get(OTHER_SOURCES, DEFAULT_OTHER_THRESHOLD)
    sources = [source for source in thresholds if source != OTHER_SOURCES]
    threshold_seconds = [thresholds[source].total_seconds() for source in sources]
    rows = con.execute(
        f"""
        with thresholds as (
            select unnest($sources::varchar[]) as source_name,
                   unnest($seconds::double[]) as threshold_seconds
        )
        select o.order_id, o.order_name, o.source_name, o.created_at,
               $now::timestamptz - o.created_at as age, o.last_fetched_at
        from orders o
        left join thresholds t on t.source_name = o.source_name
        where o.status = 'created'
          and not o.test
          and epoch($now::timestamptz) - epoch(o.created_at)
              > coalesce(t.threshold_seconds, $other_seconds)
        order by o.created_at, o.order_id
        {"limit " + str(int(limit)) if limit is not None else ""}
        """,
        {
            "sources": sources,
            "seconds": threshold_seconds,
            "now": now,
            "other_seconds": other_threshold.total_seconds(),
        },
    ).fetchall()
    return [StuckOrder(*row) for row in rows]


def duplicate_keys(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    """Each key of `table` held by more than one row, with its row count (empty when the key is unique)."""
    keys = KEY_COLUMNS[table]
    key_list = ", ".join(keys)
    cursor = con.execute(
        f"""
        select {key_list}, count(*) as rows
        from {table}
        group by {key_list}
        having count(*) > 1
        order by {key_list}
        """
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def new_rejects(con: duckdb.DuckDBPyConnection, after_page_seq: int | None = None) -> list[dict[str, Any]]:
    """Rejects from pages above `after_page_seq`; by default, those the latest derivation folded in.

    Rows carry the order id, reason, detail and the page they came from (not the raw JSON), in page order.
    """
    if after_page_seq is None:
        row = con.execute(
            "select previous_page_seq from derivation_state where source = ?", [WATERMARK_SOURCE]
        ).fetchone()
        after_page_seq = int(row[0]) if row else 0
    cursor = con.execute(
        """
        select order_id, reason, detail, asset, partition_key, page_number, position, page_seq, fetched_at
        from order_rejects
        where page_seq > ?
        order by page_seq, position
        """,
        [after_page_seq],
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def reject_reason_counts(rejects: list[dict[str, Any]]) -> dict[str, int]:
    """How many of `rejects` have each reason, most frequent first."""
    counts: dict[str, int] = {}
    for reject in rejects:
        counts[reject["reason"]] = counts.get(reject["reason"], 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
