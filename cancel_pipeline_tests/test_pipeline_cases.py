"""Issue 4's cancellation cases on demo-store data, fetched over HTTP and derived by the real Dagster assets.

One module-wide warehouse holds a two-day backfill of both raw assets and the derived tables; each case finds
orders of its kind in what the store served and compares the tables with what the table contract demands of
their JSON (`pipeline_fixtures`' Python rules). Cases about the order of fetches run their own small windows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest
from cancel_pipeline_simulators.demo_store import FrozenClock

from cancel_pipeline.defs.cancellations.tables import REJECTS_CHECK, cancellation_tables
from cancel_pipeline.defs.ingestion.partitions import PARTITION_KEY_FORMAT
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.queries import stuck_orders
from cancel_pipeline_tests.pipeline_fixtures import (
    CASES_NOW,
    RANGE_END,
    RANGE_START,
    Pipeline,
    backfill_two_days,
    demo_store,
    expected_canceled_lines,
    expected_canceled_order,
    expected_order_row,
    is_stuck,
    orders_read_by,
    parse_time,
    refund_lines,
    reject_reason,
    served_pipeline,
)

# Every test talks HTTP to a served store; none should hang the suite.
pytestmark = pytest.mark.timeout(120)

Order = dict[str, Any]


@dataclass
class Cases:
    """The backfilled warehouse, the runs that filled it, and the orders the store served to them."""

    pipeline: Pipeline
    runs: list[dg.ExecuteInProcessResult]
    served: list[Order]

    @property
    def good(self) -> list[Order]:
        """Served orders the contract can type (the rest are rejects)."""
        return [order for order in self.served if reject_reason(order) is None]

    def find(self, kind: Callable[[Order], bool]) -> list[Order]:
        """The good served orders of a kind; a case with no example in the data would prove nothing."""
        found = [order for order in self.good if kind(order)]
        assert found, "the demo store's two days hold no order of this kind"
        return found


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cases]:
    clock = FrozenClock(CASES_NOW)
    store = demo_store(clock)
    database = tmp_path_factory.mktemp("cases") / "warehouse.duckdb"
    with served_pipeline(store, clock, database) as pipeline:
        runs = backfill_two_days(pipeline)
        # Every fetch happened at the frozen CASES_NOW, so each order's latest version is its JSON now.
        yield Cases(pipeline, runs, orders_read_by(store, RANGE_START, RANGE_END))


@pytest.fixture
def small_pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh warehouse over the same seeded store (its own clock), for cases that fetch window by window."""
    clock = FrozenClock(CASES_NOW)
    with served_pipeline(demo_store(clock), clock, tmp_path / "warehouse.duckdb") as pipeline:
        yield pipeline


# --- Helpers ---------------------------------------------------------------------------------------------


def table_rows(pipeline: Pipeline, table: str, order_ids: list[int]) -> list[dict[str, Any]]:
    return pipeline.query(f"select * from {table} where order_id in (select unnest(?::bigint[]))", order_ids)


@dataclass
class Tables:
    """The rows of the current-state tables for some orders: canceled lines by order, and orders by id."""

    canceled_lines: dict[int, dict[int, dict[str, Any]]]
    canceled_orders: dict[int, dict[str, Any]]
    orders: dict[int, dict[str, Any]]


def assert_tables_follow_the_contract(pipeline: Pipeline, orders: list[Order]) -> Tables:
    """canceled_orders, canceled_line_items and orders hold exactly what the contract demands of `orders`."""
    ids = [order["id"] for order in orders]
    tables = Tables({}, {}, {})
    for row in table_rows(pipeline, "canceled_line_items", ids):
        tables.canceled_lines.setdefault(row["order_id"], {})[row["line_item_id"]] = row
    tables.canceled_orders = {row["order_id"]: row for row in table_rows(pipeline, "canceled_orders", ids)}
    tables.orders = {row["order_id"]: row for row in table_rows(pipeline, "orders", ids)}
    expected_lines = {order["id"]: expected_canceled_lines(order) for order in orders}
    assert tables.canceled_lines == {order_id: rows for order_id, rows in expected_lines.items() if rows}
    assert tables.canceled_orders == {
        order["id"]: expected_canceled_order(order) for order in orders if order["cancelled_at"]
    }
    # last_fetched_at is when the pipeline read the order, not order data.
    assert {
        order_id: {k: v for k, v in row.items() if k != "last_fetched_at"}
        for order_id, row in tables.orders.items()
    } == {order["id"]: expected_order_row(order) for order in orders}
    return tables


def cancel_refund_times(order: Order, line_id: int) -> list[datetime]:
    """When each refund holding a `cancel` line for `line_id` was created."""
    return [
        parse_time(refund["created_at"])
        for refund, line in refund_lines(order)
        if line["line_item_id"] == line_id and line["restock_type"] == "cancel"
    ]


def restock_types(order: Order) -> set[str]:
    return {line["restock_type"] for _, line in refund_lines(order)}


def is_full_cancel(order: Order) -> bool:
    """Canceled as a whole, with no partial cancellation before."""
    cancelled_at = parse_time(order["cancelled_at"])
    return cancelled_at is not None and all(
        parse_time(refund["created_at"]) >= cancelled_at for refund in order["refunds"]
    )


def is_partial_then_full_cancel(order: Order) -> bool:
    cancelled_at = parse_time(order["cancelled_at"])
    return cancelled_at is not None and any(
        parse_time(refund["created_at"]) < cancelled_at and line["restock_type"] == "cancel"
        for refund, line in refund_lines(order)
    )


def lines_with_two_cancel_refunds(order: Order) -> list[int]:
    if order["cancelled_at"]:
        return []
    # How many refunds hold a cancel line for each line item.
    counts = Counter(
        line_id
        for refund in order["refunds"]
        for line_id in {
            line["line_item_id"] for line in refund["refund_line_items"] if line["restock_type"] == "cancel"
        }
    )
    return [line_id for line_id, refunds in counts.items() if refunds >= 2]


def edited_lines_without_refund(order: Order) -> list[int]:
    """Lines whose ordered quantity shrank with no refund line at all for them: units an order edit removed."""
    refunded = {line["line_item_id"] for _, line in refund_lines(order)}
    return [
        line["id"]
        for line in order["line_items"]
        if line["current_quantity"] < line["quantity"] and line["id"] not in refunded
    ]


# --- The cases -------------------------------------------------------------------------------------------


def test_full_cancel(cases: Cases) -> None:
    orders = cases.find(is_full_cancel)
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    assert set(tables.canceled_orders) == {order["id"] for order in orders}
    for order in orders:
        lines = tables.canceled_lines[order["id"]].values()
        # Every line at its ordered quantity, canceled when the order was.
        assert {row["line_item_id"]: row["canceled_quantity"] for row in lines} == {
            line["id"]: line["quantity"] for line in order["line_items"]
        }
        assert {row["canceled_at"] for row in lines} == {parse_time(order["cancelled_at"])}
        assert all(row["order_canceled"] for row in lines)


def test_partial_cancel_by_refund(cases: Cases) -> None:
    def kind(order: Order) -> bool:
        return not order["cancelled_at"] and "cancel" in restock_types(order)

    orders = cases.find(kind)
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    assert not tables.canceled_orders
    assert "canceled" not in {row["status"] for row in tables.orders.values()}
    assert set(tables.canceled_lines) == {order["id"] for order in orders}
    for order in orders:
        for row in tables.canceled_lines[order["id"]].values():
            assert not row["order_canceled"]
            assert 0 < row["canceled_quantity"] <= row["quantity"]
            times = cancel_refund_times(order, row["line_item_id"])
            assert row["canceled_at"] == (max(times) if times else parse_time(order["updated_at"]))


def test_two_partial_cancels_on_one_line(cases: Cases) -> None:
    orders = cases.find(lambda order: bool(lines_with_two_cancel_refunds(order)))
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    for order in orders:
        rows = tables.canceled_lines[order["id"]]
        for line_id in lines_with_two_cancel_refunds(order):
            times = cancel_refund_times(order, line_id)
            # Both refunds' units add up, and the line was canceled when the later refund was made.
            assert rows[line_id]["canceled_quantity"] >= len(times)
            assert rows[line_id]["canceled_at"] == max(times) > min(times)


def test_edit_removal_without_refund(cases: Cases) -> None:
    orders = cases.find(lambda order: not order["cancelled_at"] and bool(edited_lines_without_refund(order)))
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    for order in orders:
        rows = tables.canceled_lines[order["id"]]
        for line in order["line_items"]:
            if line["id"] in edited_lines_without_refund(order):
                # Shopify gives an edit no time: the line takes the updated_at of the version that shows it.
                assert rows[line["id"]]["canceled_quantity"] == line["quantity"] - line["current_quantity"]
                assert rows[line["id"]]["canceled_at"] == parse_time(order["updated_at"])


def test_return_is_not_a_cancellation(cases: Cases) -> None:
    orders = cases.find(lambda order: not order["cancelled_at"] and restock_types(order) == {"return"})
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    assert not tables.canceled_lines and not tables.canceled_orders


def test_no_restock_is_not_a_cancellation(cases: Cases) -> None:
    orders = cases.find(lambda order: not order["cancelled_at"] and restock_types(order) == {"no_restock"})
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    assert not tables.canceled_lines and not tables.canceled_orders
    # The refunded units are gone from the order, and still not counted as an edit removal.
    assert any(
        line["current_quantity"] < line["quantity"] for order in orders for line in order["line_items"]
    )


def test_partial_then_full_cancel(cases: Cases, small_pipeline: Pipeline) -> None:
    orders = cases.find(is_partial_then_full_cancel)
    assert_tables_follow_the_contract(cases.pipeline, orders)

    # One such order, fetched twice: once between its partial cancel and its cancellation, once after.
    order = orders[0]
    cancelled_at = parse_time(order["cancelled_at"])
    partial_at = max(t for t in (parse_time(r["created_at"]) for r in order["refunds"]) if t < cancelled_at)
    pipeline, clock = small_pipeline, small_pipeline.clock
    clock.set(partial_at + timedelta(seconds=1))
    before = pipeline.store.get_order(order["id"])
    assert before is not None and before["cancelled_at"] is None
    assert pipeline.materialize(
        [raw_updated_order_pages, cancellation_tables], partition_key=day_key(partial_at)
    ).success
    partial = assert_tables_follow_the_contract(pipeline, [before])
    assert not partial.canceled_orders
    assert partial.canceled_lines[order["id"]]
    assert not any(row["order_canceled"] for row in partial.canceled_lines[order["id"]].values())

    clock.set(CASES_NOW)
    # Read by the cancellation feed, in the day of its latest update.
    final_window = day_key(parse_time(order["updated_at"]))
    assert pipeline.materialize(
        [raw_canceled_order_pages, cancellation_tables], partition_key=final_window
    ).success
    assert_tables_follow_the_contract(pipeline, [order])
    versions = pipeline.query(
        "select updated_at, superseded_by_updated_at from order_versions where order_id = ? order by updated_at",
        order["id"],
    )
    assert versions == [
        {
            "updated_at": parse_time(before["updated_at"]),
            "superseded_by_updated_at": parse_time(order["updated_at"]),
        },
        {"updated_at": parse_time(order["updated_at"]), "superseded_by_updated_at": None},
    ]


def test_test_orders(cases: Cases) -> None:
    orders = cases.find(lambda order: order["test"])
    tables = assert_tables_follow_the_contract(cases.pipeline, orders)
    assert {row["test"] for row in tables.orders.values()} == {True}
    # Test orders are never "stuck", whatever their age; real orders in 'created' are, once old enough.
    later = RANGE_END + timedelta(days=30)
    with warehouse_connection(cases.pipeline.database) as con:
        flagged = {order.order_id for order in stuck_orders(con, later)}
    assert flagged == {order["id"] for order in cases.good if is_stuck(order, later)}
    assert flagged and not flagged & {order["id"] for order in orders}


def day_key(moment: datetime) -> str:
    """The key of the day (UTC) that holds `moment`."""
    return moment.astimezone(UTC).strftime(PARTITION_KEY_FORMAT)


def test_update_on_window_boundary(cases: Cases, small_pipeline: Pipeline) -> None:
    on_boundary = cases.find(
        lambda order: order["cancelled_at"] and parse_time(order["updated_at"]).timestamp() % 1800 == 0
    )
    order = on_boundary[0]
    boundary = parse_time(order["updated_at"])
    day, previous_day = day_key(boundary), day_key(boundary - timedelta(days=1))
    # Dagster's days are half-open, Shopify's updated_at_max inclusive: an order at midnight is read by the
    # days either side, any other time only by its own day.
    runs = [
        (asset, key)
        for asset in (raw_canceled_order_pages, raw_updated_order_pages)
        for key in (previous_day, day)
    ]
    for asset, key in runs[:-1]:
        assert small_pipeline.materialize([asset], partition_key=key).success
    last_asset, last_key = runs[-1]
    assert small_pipeline.materialize([last_asset, cancellation_tables], partition_key=last_key).success
    pages = small_pipeline.query(
        "select asset, partition_key, body::varchar as body from raw_order_page_bodies"
    )
    read_by = {
        (page["asset"], page["partition_key"])
        for page in pages
        if order["id"] in [o.get("id") for o in orjson.loads(page["body"])["orders"]]
    }
    at_midnight = boundary.astimezone(UTC).time() == datetime.min.time()
    assert read_by == {(asset.key.to_user_string(), key) for asset, key in runs if key == day or at_midnight}
    # One version, one row in each table, however many reads.
    versions = small_pipeline.query("select updated_at from order_versions where order_id = ?", order["id"])
    assert versions == [{"updated_at": boundary}]
    assert_tables_follow_the_contract(small_pipeline, [order])
    # And in the backfill, where a range is one query, every order on a boundary merged once too.
    assert_tables_follow_the_contract(cases.pipeline, on_boundary)


def test_many_orders_in_one_updated_at_second(cases: Cases) -> None:
    moment, count = Counter(order["updated_at"] for order in cases.good).most_common(1)[0]
    assert count > 250, "no second holds more orders than one page"
    same_second = [order for order in cases.good if order["updated_at"] == moment]
    assert_tables_follow_the_contract(cases.pipeline, same_second)
    rows = cases.pipeline.query("select order_id from orders where updated_at = ?", parse_time(moment))
    assert sorted(row["order_id"] for row in rows) == sorted(order["id"] for order in same_second)


def test_each_reject_reason(cases: Cases) -> None:
    # Every order object of every landed page, judged by the contract's rules.
    pages = cases.pipeline.query(
        "select asset, partition_key, page_number, body::varchar as body from raw_order_page_bodies order by page_seq"
    )
    expected = set()
    for page in pages:
        for position, obj in enumerate(orjson.loads(page["body"])["orders"], start=1):
            reason = reject_reason(obj)
            if reason is not None:
                order_id = obj["id"] if reason != "id_not_integer" else None
                key = (page["asset"], page["partition_key"], page["page_number"], position)
                expected.add((*key, reason, order_id, orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)))
    rejects = cases.pipeline.query(
        "select asset, partition_key, page_number, position, reason, order_id, raw_order::varchar as raw"
        " from order_rejects"
    )
    found = {
        (
            *(row[k] for k in ("asset", "partition_key", "page_number", "position", "reason", "order_id")),
            orjson.dumps(orjson.loads(row["raw"]), option=orjson.OPT_SORT_KEYS),
        )
        for row in rejects
    }
    assert found == expected
    # The demo store serves a broken record of every kind the contract names.
    assert {row[4] for row in expected} == {
        "id_not_integer",
        "created_at_missing",
        "updated_at_unparseable",
        "cancelled_at_unparseable",
        "closed_at_unparseable",
        "total_price_unparseable",
        "line_items_invalid",
        "refund_created_at_unparseable",
    }
    # A rejected object is kept out of the tables, the rest of its page lands, and the runs stay green with
    # the rejects check warning.
    rejected_ids = {row[5] for row in expected if row[5] is not None}
    assert not table_rows(cases.pipeline, "orders", sorted(rejected_ids))
    assert_tables_follow_the_contract(cases.pipeline, cases.good)
    for run in cases.runs:
        assert run.success
        [check] = [e for e in run.get_asset_check_evaluations() if e.check_name == REJECTS_CHECK]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert set(check.metadata["reasons"].value) <= {row[4] for row in expected}
