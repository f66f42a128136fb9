"""Incremental, set-based derivation of every warehouse table from `raw_order_pages`.

`derive_new_pages` folds every raw page above the stored watermark into the derived tables in one
transaction. Pages are taken in `page_seq` order, in batches of at most `batch_pages` pages and `batch_orders`
orders, so memory stays bounded however large a backfill is: each batch's pages are unnested, `STAGE_PAGES` pages a statement, into a temp table
of typed orders (`typed_orders.STAGE_ORDERS_SQL`), then rejects, versions, supersession and the current-state
tables of the orders the batch touched are updated with a handful of statements. Nothing loops over orders
in Python.

Convergence: a version is keyed by (order_id, updated_at); its content is that of its latest fetch (highest
page_seq), its fetch times are the min/max over every fetch, and the current tables show each order's
greatest updated_at. So re-deriving, or landing windows in any order, gives the same tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from cancel_pipeline.warehouse.connection import pause_for_kill_probe
from cancel_pipeline.warehouse.current_tables import CURRENT_TABLE_SQL
from cancel_pipeline.warehouse.raw_pages import reparse_landed_pages
from cancel_pipeline.warehouse.schema import (
    DERIVED_TABLES,
    KEY_COLUMNS,
    WATERMARK_SOURCE,
    ensure_schema,
    table_column_schema,
)

PREVIEW_ROWS = 10

# The batch's order objects (parsed and typed at landing) with where their page came from. A view, not a
# copy: each statement reads the batch's few row groups of raw_order_objects again, which is cheaper than
# writing them (nested line items and refunds included) to a temp table. DDL takes no parameters, hence
# the integers formatted in.
STAGE_ORDERS_SQL = """
create or replace temp view stage_orders as
select o.*, p.asset, p.partition_key, p.page_number, p.fetched_at, p.request_path
from raw_order_objects o
join raw_order_pages p using (page_seq)
where o.page_seq between {first_seq:d} and {last_seq:d} and o.page_seq > {watermark:d}
"""
_TEMP_TABLES = (
    "version_keys",
    "refetched_versions",
    "touched_orders",
    *(f"{prefix}_{table}" for prefix in ("new", "old", "changed", "gone") for table in CURRENT_TABLE_SQL),
)


@dataclass(frozen=True)
class TableChanges:
    """Rows a derivation wrote to one current-state table (summed over its batches)."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def __add__(self, other: TableChanges) -> TableChanges:
        return TableChanges(
            self.inserted + other.inserted, self.updated + other.updated, self.deleted + other.deleted
        )


@dataclass
class DeriveResult:
    """What one derivation did: counts for asset metadata and a preview of the canceled rows it changed."""

    full_refresh: bool
    watermark_before: int
    watermark_after: int
    pages_processed: int = 0
    orders_seen: int = 0
    new_versions: int = 0
    rejects_added: int = 0
    rejects_removed: int = 0
    table_changes: dict[str, TableChanges] = field(
        default_factory=lambda: {table: TableChanges() for table in CURRENT_TABLE_SQL}
    )
    canceled_orders_preview: list[dict[str, Any]] = field(default_factory=list)
    canceled_line_items_preview: list[dict[str, Any]] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    """How many batches the pages were folded in (`batch_pages`, `batch_orders`)."""

    def counts(self) -> dict[str, int]:
        """Every count as one flat mapping, named for display (e.g. `canceled_orders_inserted`)."""
        flat = {
            "pages_processed": self.pages_processed,
            "orders_seen": self.orders_seen,
            "new_versions": self.new_versions,
            "rejects_added": self.rejects_added,
            "rejects_removed": self.rejects_removed,
            "watermark_page_seq": self.watermark_after,
        }
        for table, changes in self.table_changes.items():
            flat[f"{table}_inserted"] = changes.inserted
            flat[f"{table}_updated"] = changes.updated
            flat[f"{table}_deleted"] = changes.deleted
        for table, count in self.row_counts.items():
            flat[f"{table}_row_count"] = count
        return flat


def read_watermark(con: duckdb.DuckDBPyConnection) -> int:
    """The highest raw page_seq already folded into the derived tables (0 when none)."""
    row = con.execute(
        "select last_page_seq from derivation_state where source = ?", [WATERMARK_SOURCE]
    ).fetchone()
    return int(row[0]) if row else 0


def derive_new_pages(
    con: duckdb.DuckDBPyConnection,
    *,
    now: datetime | None = None,
    full_refresh: bool = False,
    batch_pages: int = 400,
    batch_orders: int = 100_000,
) -> DeriveResult:
    """Fold every raw page above the watermark into the derived tables, atomically.

    `full_refresh` parses every landed page again from the page store, superseded pages included (so changed
    validation rules reach every object), and rebuilds the derived tables from them: the same tables the
    incremental runs built, since the raw layer deletes no page. `now` is recorded as the derivation time in
    `derivation_state`. On any error the transaction is rolled back, so every table and
    the watermark are as they were before the call.
    """
    if batch_pages < 1 or batch_orders < 1:
        raise ValueError(
            f"batch_pages and batch_orders must be at least 1, got {batch_pages} and {batch_orders}"
        )
    derived_at = now or datetime.now(UTC)
    ensure_schema(con)
    con.execute("begin transaction")
    try:
        result = _derive_in_transaction(con, derived_at, full_refresh, batch_pages, batch_orders)
        _drop_temp_tables(con)
        pause_for_kill_probe("derivation")
        con.execute("commit")
    except BaseException:
        # A failed COMMIT (a full disk, say) has already ended the transaction, and DuckDB then refuses the
        # rollback: that refusal must not replace the real cause as the error reported.
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    return result


def _derive_in_transaction(
    con: duckdb.DuckDBPyConnection,
    derived_at: datetime,
    full_refresh: bool,
    batch_pages: int,
    batch_orders: int,
) -> DeriveResult:
    watermark_before = read_watermark(con)
    watermark = 0 if full_refresh else watermark_before
    if full_refresh:
        # From the verbatim pages: objects are parsed and validated again, so a changed rule applies to all.
        reparse_landed_pages(con)
        for table in DERIVED_TABLES:
            con.execute(f"delete from {table}")
    pages = [
        (int(seq), int(orders or 0))
        for seq, orders in con.execute(
            "select page_seq, order_count from raw_order_pages where page_seq > ? order by page_seq",
            [watermark],
        ).fetchall()
    ]
    page_seqs = [seq for seq, _ in pages]
    result = DeriveResult(
        full_refresh=full_refresh,
        watermark_before=watermark_before,
        watermark_after=max([watermark, *page_seqs]),
        pages_processed=len(page_seqs),
    )
    columns = {
        table: ", ".join(name for name, _ in table_column_schema(con, table)) for table in CURRENT_TABLE_SQL
    }
    for batch in _batches(pages, batch_pages, batch_orders):
        _derive_batch(con, batch, watermark, columns, result)
        result.batches += 1
    result.rejects_removed = _drop_rejects_of_replaced_pages(con)
    _write_watermark(con, result.watermark_after, watermark_before, derived_at)
    result.row_counts = {
        table: int(con.execute(f"select count(*) from {table}").fetchone()[0]) for table in DERIVED_TABLES
    }
    return result


def _batches(pages: list[tuple[int, int]], batch_pages: int, batch_orders: int) -> Iterator[list[int]]:
    """Consecutive page_seqs, at most `batch_pages` pages and, unless one page alone holds more,
    `batch_orders` orders a batch: a bulk chunk holds thousands of orders where a REST page holds 250."""
    batch: list[int] = []
    orders = 0
    for seq, count in pages:
        if batch and (len(batch) == batch_pages or orders + count > batch_orders):
            yield batch
            batch, orders = [], 0
        batch.append(seq)
        orders += count
    if batch:
        yield batch


def _derive_batch(
    con: duckdb.DuckDBPyConnection,
    batch: list[int],
    watermark: int,
    columns: dict[str, str],
    result: DeriveResult,
) -> None:
    first_seq, last_seq = batch[0], batch[-1]
    con.execute(STAGE_ORDERS_SQL.format(first_seq=first_seq, last_seq=last_seq, watermark=watermark))
    result.orders_seen += _count(con, "select count(*) from stage_orders")
    result.rejects_added += _add_rejects(con)
    result.new_versions += _merge_versions(con)
    _mark_supersession(con)
    for table, new_rows_sql in CURRENT_TABLE_SQL.items():
        changes, changed_rows = _refresh_current_table(con, table, columns[table], new_rows_sql)
        result.table_changes[table] = result.table_changes[table] + changes
        if table == "canceled_orders":
            _extend_preview(result.canceled_orders_preview, changed_rows, KEY_COLUMNS[table])
        elif table == "canceled_line_items":
            _extend_preview(result.canceled_line_items_preview, changed_rows, KEY_COLUMNS[table])


def _add_rejects(con: duckdb.DuckDBPyConnection) -> int:
    """Add the rejects of the batch's pages (those of superseded pages go at the end of the derivation)."""
    con.execute(
        """
        insert into order_rejects by name
        select order_id, reason, detail, asset, partition_key, page_number, page_seq, position, fetched_at,
               raw_order, request_path
        from stage_orders
        where reason is not null
        """
    )
    return _count(con, "select count(*) from stage_orders where reason is not null")


def _merge_versions(con: duckdb.DuckDBPyConnection) -> int:
    """Upsert the batch's good versions; returns how many (order_id, updated_at) were new."""
    # One row per version: its content from the latest fetch (highest page_seq, then position), chosen on
    # narrow keys, so the nested line items and refunds are read once, by the final insert, and never
    # carried through a sort or copied into a temp table.
    con.execute(
        """
        create or replace temp table version_keys as
        select
            order_id, updated_at,
            max(page_seq * 1000000 + position) as latest,
            min(fetched_at) as first_fetched_at,
            max(fetched_at) as last_fetched_at
        from stage_orders
        where reason is null
        group by order_id, updated_at
        """
    )
    # Versions already known: their fetch times span every fetch ever made; their supersession stays.
    con.execute(
        """
        create or replace temp table refetched_versions as
        select v.order_id, v.updated_at, v.first_fetched_at, v.last_fetched_at, v.superseded_at,
               v.superseded_by_updated_at
        from order_versions v
        semi join version_keys k on v.order_id = k.order_id and v.updated_at = k.updated_at
        """
    )
    refetched = _count(con, "select count(*) from refetched_versions")
    if refetched:
        con.execute(
            """
            delete from order_versions v using refetched_versions r
            where v.order_id = r.order_id and v.updated_at = r.updated_at
            """
        )
    con.execute(
        """
        insert into order_versions by name
        select
            s.order_id, s.updated_at, s.order_name, s.created_at, s.cancelled_at, s.cancel_reason,
            s.closed_at, s.financial_status, s.fulfillment_status, s.source_name, s.currency, s.total_price,
            s.test, s.line_items, s.refunds, s.asset, s.partition_key, s.page_number, s.page_seq,
            least(k.first_fetched_at, r.first_fetched_at) as first_fetched_at,
            greatest(k.last_fetched_at, r.last_fetched_at) as last_fetched_at,
            r.superseded_at,
            r.superseded_by_updated_at
        from version_keys k
        join stage_orders s on s.page_seq = k.latest // 1000000 and s.position = k.latest % 1000000
        left join refetched_versions r on r.order_id = k.order_id and r.updated_at = k.updated_at
        """
    )
    con.execute("create or replace temp table touched_orders as select distinct order_id from version_keys")
    return _count(con, "select count(*) from version_keys") - refetched


def _mark_supersession(con: duckdb.DuckDBPyConnection) -> None:
    """Point each version of a touched order at the version that replaced it.

    A version is superseded by the next greater updated_at of the same order, at the moment both were known
    (the later of their first fetches), which does not depend on the order the pages were processed in.
    """
    con.execute(
        """
        update order_versions v
        set superseded_by_updated_at = n.next_updated_at, superseded_at = n.next_known_at
        from (
            select
                order_id,
                updated_at,
                lead(updated_at) over by_version as next_updated_at,
                case
                    when lead(updated_at) over by_version is not null
                    then greatest(first_fetched_at, lead(first_fetched_at) over by_version)
                end as next_known_at
            from order_versions
            where order_id in (select order_id from touched_orders)
            window by_version as (partition by order_id order by updated_at)
        ) n
        where v.order_id = n.order_id and v.updated_at = n.updated_at
          and (v.superseded_by_updated_at is distinct from n.next_updated_at
               or v.superseded_at is distinct from n.next_known_at)
        """
    )


def _refresh_current_table(
    con: duckdb.DuckDBPyConnection, table: str, columns: str, new_rows_sql: str
) -> tuple[TableChanges, list[dict[str, Any]]]:
    """Rewrite only the rows of `table` that differ from their recomputation for the touched orders."""
    keys = KEY_COLUMNS[table]
    key_list = ", ".join(keys)
    key_match = " and ".join(f"t.{key} = k.{key}" for key in keys)
    con.execute(
        f"""
        create or replace temp table old_{table} as
        select {columns} from {table} where order_id in (select order_id from touched_orders)
        """
    )
    if not _count(con, f"select count(*) from old_{table}"):
        # Orders new to the table (a backfill's usual case): every recomputed row is an insert, written
        # straight into the table.
        changed = _count(con, f"insert into {table} select {columns} from ({new_rows_sql})")
        updated = deleted = 0
        changed_rows = f"select * from {table} where order_id in (select order_id from touched_orders)"
    else:
        con.execute(f"create or replace temp table new_{table} as select {columns} from ({new_rows_sql})")
        con.execute(
            f"create or replace temp table changed_{table} as select * from new_{table} except select * from old_{table}"
        )
        con.execute(
            f"""
            create or replace temp table gone_{table} as
            select {key_list} from old_{table} except select {key_list} from new_{table}
            """
        )
        changed = _count(con, f"select count(*) from changed_{table}")
        updated = _count(
            con,
            f"select count(*) from changed_{table} k semi join old_{table} t on {key_match}",
        )
        deleted = _count(con, f"select count(*) from gone_{table}")
        con.execute(
            f"""
            delete from {table} t using (
                select {key_list} from changed_{table} union all select {key_list} from gone_{table}
            ) k
            where {key_match}
            """
        )
        con.execute(f"insert into {table} select * from changed_{table}")
        changed_rows = f"select * from changed_{table}"
    preview: list[dict[str, Any]] = []
    if table in ("canceled_orders", "canceled_line_items"):
        cursor = con.execute(f"{changed_rows} order by {key_list} limit {PREVIEW_ROWS}")
        names = [column[0] for column in cursor.description]
        preview = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return TableChanges(inserted=changed - updated, updated=updated, deleted=deleted), preview


def _extend_preview(
    preview: list[dict[str, Any]], rows: Sequence[dict[str, Any]], keys: tuple[str, ...]
) -> None:
    """Add `rows` to a run's preview: a later batch's row replaces an earlier one with the same key."""
    position = {tuple(row[key] for key in keys): index for index, row in enumerate(preview)}
    for row in rows:
        key = tuple(row[k] for k in keys)
        if key in position:
            preview[position[key]] = row
        elif len(preview) < PREVIEW_ROWS:
            position[key] = len(preview)
            preview.append(row)


def _drop_rejects_of_replaced_pages(con: duckdb.DuckDBPyConnection) -> int:
    """Remove rejects whose page was superseded (its window was read again) or pruned.

    `order_rejects` shows what the current pages reject, so a full rebuild, which adds the rejects of every
    page, ends with the same rows as the incremental runs did.
    """
    return _count(
        con,
        """
        delete from order_rejects r
        where not exists (
            select 1 from raw_order_pages p where p.page_seq = r.page_seq and p.superseded_at is null
        )
        """,
    )


def _write_watermark(
    con: duckdb.DuckDBPyConnection, last_page_seq: int, previous_page_seq: int, derived_at: datetime
) -> None:
    con.execute(
        """
        insert or replace into derivation_state (source, last_page_seq, previous_page_seq, derived_at)
        values (?, ?, ?, ?)
        """,
        [WATERMARK_SOURCE, last_page_seq, previous_page_seq, derived_at],
    )


def _drop_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("drop view if exists temp.stage_orders")
    for table in _TEMP_TABLES:
        con.execute(f"drop table if exists temp.{table}")


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
