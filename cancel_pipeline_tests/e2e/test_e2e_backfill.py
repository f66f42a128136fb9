"""End to end: a backfill of the cancellation feed launched through the webserver, as a user launches it.

`EXPECTED_BACKFILL_ASSETS` lists what the backfill must reach and `EXPECTED_CHECKS` the checks that must run
with it; each expected asset needs a verifier in `TABLE_VERIFIERS`, which compares its table with what the
frozen demo store serves. Listing an asset that the definitions lack fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore
from cancel_pipeline_testkit.graphql import DagsterGraphQLClient
from cancel_pipeline_testkit.selection import partition_keys_in_range

from cancel_pipeline_tests.e2e.scenario import BACKFILL_ROOT, BACKFILL_WINDOW, CompletedBackfill
from cancel_pipeline_tests.pipeline_fixtures import reject_reason

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EXPECTED_BACKFILL_ASSETS: tuple[str, ...] = (
    "raw_canceled_order_pages",
    "order_versions",
    "order_rejects",
    "canceled_orders",
    "canceled_line_items",
    "orders",
)
"""Assets at or downstream of `BACKFILL_ROOT` in definitions.py; add derived tables as they are defined."""

EXPECTED_CHECKS: dict[str, tuple[str, ...]] = {
    "orders": ("orders_stuck_in_created", "orders_key_is_unique"),
    "canceled_orders": ("canceled_orders_key_is_unique",),
    "canceled_line_items": ("canceled_line_items_key_is_unique",),
    "order_rejects": ("order_rejects_no_new_rows",),
}
"""Asset -> checks that must have run on it in the backfill."""


def landed_canceled_orders(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], dict[Any, dict]]:
    """The backfill's `raw_canceled_order_pages` rows (window bounds, request bounds, count) and the orders
    in their bodies by id."""
    rows = con.execute(
        """
        select window_start, window_end, requested_min, requested_max, order_count, body
        from raw_order_page_bodies
        where asset = ? and window_start >= ? and window_end <= ?
        order by window_start, page_number
        """,
        [BACKFILL_ROOT, BACKFILL_WINDOW.start, BACKFILL_WINDOW.end],
    ).fetchall()
    orders = {}
    for *_bounds, _count, body in rows:
        for order in json.loads(body)["orders"]:
            orders[order.get("id")] = order
    return [row[:5] for row in rows], orders


def well_formed(landed: dict[Any, dict]) -> dict[Any, dict]:
    """The landed orders the contract types; the store also serves a few malformed ones (a day holds some),
    which go to `order_rejects` instead."""
    return {order_id: order for order_id, order in landed.items() if reject_reason(order) is None}


def verify_raw_canceled_order_pages(con: duckdb.DuckDBPyConnection, store: DemoStore) -> None:
    """The pages cover the backfilled span and hold exactly the canceled orders the store serves for it."""
    rows, orders = landed_canceled_orders(con)
    assert rows, f"no {BACKFILL_ROOT} pages landed for {BACKFILL_WINDOW}"
    assert min(row[0] for row in rows) == BACKFILL_WINDOW.start
    assert max(row[1] for row in rows) == BACKFILL_WINDOW.end
    assert all(requested_min < window_start for window_start, _, requested_min, _, _ in rows), "no overlap"
    assert sum(row[4] for row in rows) == len(orders), "order_count disagrees with the bodies (or duplicates)"
    requested_min = min(row[2] for row in rows)
    requested_max = max(row[3] for row in rows)
    expected = store.orders(status="cancelled", updated_at_min=requested_min, updated_at_max=requested_max)
    assert expected, "the demo store has no canceled order in the span: the test would prove nothing"
    assert sorted(orders, key=str) == sorted((order["id"] for order in expected), key=str)
    assert all(order["cancelled_at"] for order in orders.values())


def verify_canceled_orders(con: duckdb.DuckDBPyConnection, store: DemoStore) -> None:
    """Every canceled order landed by the backfill is in `canceled_orders` once, with its reason."""
    landed = well_formed(landed_canceled_orders(con)[1])
    table = dict(con.execute("select order_id, cancel_reason from canceled_orders").fetchall())
    (rows,) = con.execute("select count(*) from canceled_orders").fetchone()
    assert rows == len(table), "order_id is not unique in canceled_orders"
    typed = {order_id: order for order_id, order in landed.items() if isinstance(order_id, int)}
    assert typed, "no well-formed canceled order landed"
    for order_id, order in typed.items():
        assert order_id in table, f"canceled order {order_id} is missing from canceled_orders"
        assert table[order_id] == order.get("cancel_reason")


def verify_orders(con: duckdb.DuckDBPyConnection, store: DemoStore) -> None:
    """Every order landed by the backfill is in `orders` once; canceled ones have status 'canceled'."""
    landed = well_formed(landed_canceled_orders(con)[1])
    table = dict(con.execute("select order_id, status from orders").fetchall())
    (rows,) = con.execute("select count(*) from orders").fetchone()
    assert rows == len(table), "order_id is not unique in orders"
    for order_id in (order_id for order_id in landed if isinstance(order_id, int)):
        assert table.get(order_id) == "canceled", f"order {order_id}: {table.get(order_id)!r}"


def verify_order_versions(con: duckdb.DuckDBPyConnection, store: DemoStore) -> None:
    """Every well-formed order landed by the backfill has its version in `order_versions`."""
    landed = well_formed(landed_canceled_orders(con)[1])
    versions = set(con.execute("select order_id from order_versions").fetchall())
    missing = [order_id for order_id in landed if isinstance(order_id, int) and (order_id,) not in versions]
    assert not missing, f"landed orders missing from order_versions: {missing}"


def verify_order_rejects(con: duckdb.DuckDBPyConnection, store: DemoStore) -> None:
    """A reject names its reason and its page; no well-formed canceled order of the backfill is rejected."""
    landed = well_formed(landed_canceled_orders(con)[1])
    rejects = con.execute("select order_id, reason, page_seq from order_rejects").fetchall()
    assert all(reason and page_seq is not None for _id, reason, page_seq in rejects), rejects
    typed = con.execute("select distinct order_id from order_versions").fetchall()
    rejected_only = {order_id for order_id, _, _ in rejects} - {order_id for (order_id,) in typed}
    assert not rejected_only & set(landed), "a landed canceled order was rejected and never typed"
    malformed = {
        order_id
        for order_id, order in landed_canceled_orders(con)[1].items()
        if isinstance(order_id, int) and reject_reason(order) is not None
    }
    assert malformed <= {order_id for order_id, _, _ in rejects}, "a malformed landed order has no reject"


def verify_canceled_line_items(con: duckdb.DuckDBPyConnection, store: DemoStore) -> None:
    """Each line of a fully canceled order landed by the backfill is canceled whole, once."""
    landed = well_formed(landed_canceled_orders(con)[1])
    rows = con.execute(
        "select order_id, line_item_id, quantity, canceled_quantity, order_canceled from canceled_line_items"
    ).fetchall()
    assert len(rows) == len({(order_id, line_id) for order_id, line_id, *_ in rows}), "key is not unique"
    by_order: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_order.setdefault(row[0], []).append(row)
    for order_id, order in landed.items():
        if not isinstance(order_id, int):
            continue
        lines = by_order.get(order_id, [])
        assert len(lines) == len(order["line_items"]), f"order {order_id}: {len(lines)} canceled lines"
        assert all(quantity == canceled and whole for _o, _l, quantity, canceled, whole in lines), lines


TableVerifier = Callable[[duckdb.DuckDBPyConnection, DemoStore], None]

TABLE_VERIFIERS: dict[str, TableVerifier] = {
    "raw_canceled_order_pages": verify_raw_canceled_order_pages,
    "order_versions": verify_order_versions,
    "order_rejects": verify_order_rejects,
    "canceled_orders": verify_canceled_orders,
    "canceled_line_items": verify_canceled_line_items,
    "orders": verify_orders,
}
"""How each expected asset's table is checked against the demo store."""


def test_backfill_reaches_every_expected_asset(completed_backfill: CompletedBackfill) -> None:
    missing = [key for key in EXPECTED_BACKFILL_ASSETS if key not in completed_backfill.ranges]
    assert not missing, f"not in the backfill (absent from the asset graph?): {missing}"
    unverified = [key for key in EXPECTED_BACKFILL_ASSETS if key not in TABLE_VERIFIERS]
    assert not unverified, f"expected assets without a table verifier: {unverified}"


def test_backfill_succeeds_in_few_runs(completed_backfill: CompletedBackfill) -> None:
    backfill = completed_backfill.backfill
    assert backfill.status == "COMPLETED_SUCCESS", (
        f"backfill {backfill.backfill_id} ended {backfill.status}: {backfill.error}; runs {backfill.runs}\n"
        f"{completed_backfill.server.log_tail()}"
    )
    assert backfill.runs and set(backfill.runs.values()) == {"SUCCESS"}, backfill.runs
    # A range backfill runs as one run per asset at most, never one per day.
    assert len(backfill.runs) <= len(completed_backfill.ranges), backfill.runs


def test_every_window_is_materialized_by_the_backfill(
    completed_backfill: CompletedBackfill, graphql: DagsterGraphQLClient, project_defs: dg.Definitions
) -> None:
    run_ids = set(completed_backfill.backfill.runs)
    for key, key_range in completed_backfill.ranges.items():
        if key_range is None:
            state = graphql.asset_state(key)
            assert state.latest_materialization_run_id in run_ids, (
                f"{key} was not materialized by the backfill"
            )
            continue
        partitions = partition_keys_in_range(project_defs, key, key_range)
        assert partitions[0] == key_range[0] and partitions[-1] == key_range[1]
        if key == BACKFILL_ROOT:
            assert partitions == ["2026-11-19"], partitions  # one day
        by_partition = graphql.latest_materialization_runs(key, partitions)
        not_by_backfill = {partition: run for partition, run in by_partition.items() if run not in run_ids}
        assert not not_by_backfill, f"{key}: partitions not materialized by the backfill: {not_by_backfill}"


@pytest.mark.parametrize("asset", EXPECTED_BACKFILL_ASSETS)
def test_warehouse_table_matches_the_store(
    asset: str, warehouse: duckdb.DuckDBPyConnection, demo_store: DemoStore
) -> None:
    TABLE_VERIFIERS[asset](warehouse, demo_store)


def test_checks_ran_with_the_backfill(
    completed_backfill: CompletedBackfill, graphql: DagsterGraphQLClient
) -> None:
    run_ids = set(completed_backfill.backfill.runs)
    ran: dict[str, set[str]] = {}
    for key in completed_backfill.ranges:
        for name, result in graphql.asset_state(key).checks.items():
            assert result.run_id in run_ids, f"check {key}:{name} did not run in the backfill"
            # A check that raised is EXECUTION_FAILED; a check that found a problem is FAILED, a result too.
            assert result.status in {"SUCCEEDED", "FAILED"}, f"check {key}:{name} ended {result.status}"
            assert result.passed is (result.status == "SUCCEEDED")
            ran.setdefault(key, set()).add(name)
    for key, names in EXPECTED_CHECKS.items():
        missing = set(names) - ran.get(key, set())
        assert not missing, f"checks on {key} that did not run: {sorted(missing)}"
