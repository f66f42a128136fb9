"""Property: landing and deriving windows in any order, any number of times, converges to one in-order run."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.schema import ensure_schema
from cancel_pipeline_tests.order_builders import land_page, line_item, order, refund, utc

T0 = utc(2025, 3, 3)

# Which page landed a row, and its sequence number, depend on landing order by design; everything else must not.
_LANDING_COLUMNS = {"page_seq", "asset", "partition_key", "page_number"}
_COMPARED_TABLES = ("order_versions", "order_rejects", "canceled_orders", "canceled_line_items", "orders")


def version_payload(order_id: int, version: int, kind: str) -> dict[str, Any]:
    """The one payload of (order_id, version): a given version always has the same content."""
    updated = T0 + timedelta(hours=version, minutes=order_id)
    created = T0 - timedelta(days=1)
    lines = [line_item(order_id * 10 + 1, 3), line_item(order_id * 10 + 2, 1)]
    if kind == "plain":
        return order(order_id, updated, created_at=created, line_items=lines)
    if kind == "refund_cancel":
        lines[0]["current_quantity"] = 2
        return order(
            order_id,
            updated,
            created_at=created,
            line_items=lines,
            refunds=[refund(order_id, updated, [(order_id * 10 + 1, 1, "cancel")])],
        )
    if kind == "edit":
        lines[0]["current_quantity"] = 1
        return order(order_id, updated, created_at=created, line_items=lines, fulfillment_status="partial")
    if kind == "cancel":
        return order(order_id, updated, created_at=created, line_items=lines, cancelled_at=updated)
    if kind == "fulfilled":
        return order(order_id, updated, created_at=created, line_items=lines, fulfillment_status="fulfilled")
    return {**order(order_id, updated, created_at=created, line_items=lines), "total_price": "oops"}


KINDS = ("plain", "refund_cancel", "edit", "cancel", "fulfilled", "rejected")

# A window is a list of pages; a page is a list of (order_id, version) sightings.
sighting = st.tuples(st.integers(1, 5), st.integers(0, 3))
window = st.lists(st.lists(sighting, min_size=0, max_size=4), min_size=1, max_size=2)


def land_window(con: duckdb.DuckDBPyConnection, index: int, pages: list, kinds: dict) -> None:
    for page_number, page in enumerate(pages, start=1):
        land_page(
            con,
            [version_payload(order_id, version, kinds[order_id, version]) for order_id, version in page],
            partition_key=f"window-{index}",
            page_number=page_number,
            fetched_at=T0 + timedelta(days=1, hours=index),
        )


def comparable_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    tables = {}
    for table in _COMPARED_TABLES:
        cursor = con.execute(f"select * from {table}")
        names = [column[0] for column in cursor.description]
        rows = [
            repr(
                {name: value for name, value in zip(names, row, strict=True) if name not in _LANDING_COLUMNS}
            )
            for row in cursor.fetchall()
        ]
        tables[table] = sorted(rows)
    return tables


@pytest.mark.timeout(120)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    windows=st.lists(window, min_size=1, max_size=4),
    kinds=st.dictionaries(st.tuples(st.integers(1, 5), st.integers(0, 3)), st.sampled_from(KINDS)),
    data=st.data(),
)
def test_windows_in_any_order_twice_equal_one_in_order_run(windows, kinds, data):
    kinds = {(o, v): kinds.get((o, v), "plain") for o in range(1, 6) for v in range(4)}
    with tempfile.TemporaryDirectory(prefix="derive-property-") as folder:
        expected, actual = _in_order_and_shuffled(Path(folder), windows, kinds, data)
    assert actual == expected


def _in_order_and_shuffled(folder: Path, windows, kinds, data):
    in_order = duckdb.connect(str(folder / "in_order.duckdb"))
    ensure_schema(in_order)
    for index, pages in enumerate(windows):
        land_window(in_order, index, pages, kinds)
    derive_new_pages(in_order)
    expected = comparable_tables(in_order)
    in_order.close()

    shuffled = duckdb.connect(str(folder / "shuffled.duckdb"))
    ensure_schema(shuffled)
    for _ in range(2):
        order_of_windows = data.draw(st.permutations(range(len(windows))))
        for index in order_of_windows:
            land_window(shuffled, index, windows[index], kinds)
            if data.draw(st.booleans()):
                derive_new_pages(shuffled, batch_pages=data.draw(st.integers(1, 3)))
        derive_new_pages(shuffled, batch_pages=data.draw(st.integers(1, 3)))
    actual = comparable_tables(shuffled)
    shuffled.close()
    return expected, actual
